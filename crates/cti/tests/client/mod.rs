//! A desk client for tests: a real WebSocket client (tokio-tungstenite) speaking the CTI
//! protocol, with events kept aside while waiting for a reply.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const ORIGIN: &str = "http://desk.test";
const WAIT: Duration = Duration::from_secs(10);

pub struct Desk {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
    /// Events received while waiting for replies, oldest first, with arrival times.
    pub events: VecDeque<(Instant, Value)>,
}

impl Desk {
    /// Opens `/cti` with `Origin: origin` (none when `None`).
    pub async fn connect(
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Result<Desk, tungstenite::Error> {
        let mut req = format!("ws://{addr}/cti").into_client_request()?;
        if let Some(o) = origin {
            req.headers_mut()
                .insert("Origin", o.parse().expect("origin header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Desk {
            ws,
            next: 0,
            events: VecDeque::new(),
        })
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send frame");
    }

    /// The next text frame as JSON (pings from the server are answered and skipped).
    pub async fn frame(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("socket open")
                .expect("frame");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("server frames are JSON");
                if v["type"] == "ping" {
                    self.send_raw(Message::text(json!({"v":1,"type":"pong"}).to_string()))
                        .await;
                    continue;
                }
                return v;
            }
        }
    }

    /// Sends `req` (with `v` and a fresh `id`) and returns its reply or error frame.
    pub async fn request(&mut self, mut req: Value) -> Value {
        self.next += 1;
        let id = format!("r{}", self.next);
        req["v"] = json!(1);
        req["id"] = json!(id);
        self.send_raw(Message::text(req.to_string())).await;
        self.reply_to(&id).await
    }

    /// Waits for the reply or error frame with `id`, keeping events aside.
    pub async fn reply_to(&mut self, id: &str) -> Value {
        loop {
            let f = self.frame().await;
            if f["id"] == id && (f["type"] == "reply" || f["type"] == "error") {
                return f;
            }
            if f["type"] != "reply" && f["type"] != "error" {
                self.events.push_back((Instant::now(), f));
            }
        }
    }

    /// The next event of `kind` (earlier events of other kinds stay queued).
    pub async fn event(&mut self, kind: &str) -> (Instant, Value) {
        if let Some(i) = self.events.iter().position(|(_, e)| e["type"] == kind) {
            return self.events.remove(i).expect("index in range");
        }
        loop {
            let f = self.frame().await;
            let at = Instant::now();
            if f["type"] == kind {
                return (at, f);
            }
            self.events.push_back((at, f));
        }
    }

    /// Sends a request and expects a reply (panics with the error frame otherwise).
    pub async fn ok(&mut self, req: Value) -> Value {
        let r = self.request(req.clone()).await;
        assert_eq!(r["type"], "reply", "{req} → {r}");
        r["data"].clone()
    }

    /// Sends a request and expects an error frame with `code`.
    pub async fn fails(&mut self, req: Value, code: &str) -> Value {
        let r = self.request(req.clone()).await;
        assert_eq!(r["type"], "error", "{req} → {r}");
        assert_eq!(r["code"], code, "{req} → {r}");
        r
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Value {
        self.ok(json!({"type": "auth.login", "user": user, "password": password}))
            .await
    }

    /// Whether a frame containing `needle` has reached this client already (without
    /// waiting): in the kernel's receive buffer (peeked) or read and queued by the
    /// WebSocket layer. Loopback TCP puts bytes into the receiver's buffer during the
    /// sender's write, so this tells what the server wrote before now.
    pub fn has_arrived(&mut self, needle: &str) -> bool {
        use futures_util::FutureExt;
        if self
            .events
            .iter()
            .any(|(_, e)| e.to_string().contains(needle))
        {
            return true;
        }
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 256 * 1024];
            if let Ok(n) = socket2::SockRef::from(tcp).peek(&mut buf) {
                // SAFETY: `peek` initialised the first `n` bytes.
                let bytes: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    return true;
                }
            }
        }
        // Frames the WebSocket layer already buffered come out without I/O.
        while let Some(Some(Ok(Message::Text(t)))) = self.ws.next().now_or_never() {
            if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                self.events.push_back((Instant::now(), v));
            }
        }
        self.events
            .iter()
            .any(|(_, e)| e.to_string().contains(needle))
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
