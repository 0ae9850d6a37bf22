//! SIP over WebSocket (RFC 7118), server side: the upgrade checks and the connection loop.
//!
//! The upgrade must offer the `sip` subprotocol (§4.1; anything else is refused, since a
//! browser page that forgot it would otherwise talk SIP to us under some other contract),
//! and, when an allow-list is configured, come from an allowed Origin. After it, every
//! text or binary frame is one SIP message (§5.1); our messages go out as text frames
//! (binary when they are not UTF-8).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
pub use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::flow::Flow;
use crate::msg::Limits;

/// WebSocket options of the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WsConfig {
    /// Allowed `Origin` values (e.g. `https://desk.example.com`), compared
    /// case-insensitively. Empty: any Origin, or none, is accepted. Non-empty: an upgrade
    /// without an allowed Origin is refused with 403.
    pub origins: Vec<String>,
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_string()));
    *r.status_mut() = status;
    r
}

/// Whether the comma-separated `Sec-WebSocket-Protocol` offer contains `sip`.
fn offers_sip(req: &Request) -> bool {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"))
}

/// The upgrade decision (the handshake callback): `Ok` adds `Sec-WebSocket-Protocol: sip`.
// The result type is tungstenite's handshake callback signature.
#[allow(clippy::result_large_err)]
pub fn check_upgrade(
    cfg: &WsConfig,
    req: &Request,
    mut resp: Response,
) -> Result<Response, ErrorResponse> {
    if !offers_sip(req) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the 'sip' WebSocket subprotocol is required (RFC 7118)",
        ));
    }
    if !cfg.origins.is_empty() {
        let origin = req.headers().get("origin").and_then(|o| o.to_str().ok());
        let allowed = origin.is_some_and(|o| cfg.origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !allowed {
            return Err(refuse(StatusCode::FORBIDDEN, "Origin not allowed"));
        }
    }
    resp.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("sip"));
    Ok(resp)
}

/// Frame and message limits: a SIP message is at most `limits.max_message_size`.
pub fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_message_size))
}

/// Why a WebSocket connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsEnd {
    /// Closed by either side, or the core went away.
    Closed,
    /// A frame or message above the limit (closed with 1009).
    TooBig,
}

/// Runs one WebSocket SIP connection: frames in go to `inbound` as whole messages,
/// `outbound` goes out as frames.
pub(crate) async fn run<S, F, Fut>(
    mut ws: WebSocketStream<S>,
    flow: Flow,
    mut deliver: F,
    mut outbound: mpsc::Receiver<Bytes>,
) -> WsEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Flow, Bytes) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if !deliver(flow, Bytes::from(t)).await {
                        return WsEnd::Closed;
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    if !deliver(flow, b).await {
                        return WsEnd::Closed;
                    }
                }
                // Pings are answered by tungstenite on the next write or flush.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    let _ = ws.flush().await;
                }
                Some(Ok(Message::Close(_))) | None => return WsEnd::Closed,
                Some(Err(WsError::Capacity(e))) => {
                    tracing::debug!(remote = %flow.remote, error = %e, "WebSocket message too large");
                    let close = CloseFrame {
                        code: CloseCode::Size,
                        reason: Utf8Bytes::from_static("SIP message too large"),
                    };
                    let _ = ws.send(Message::Close(Some(close))).await;
                    return WsEnd::TooBig;
                }
                Some(Err(e)) => {
                    tracing::debug!(remote = %flow.remote, error = %e, "WebSocket error; closing");
                    return WsEnd::Closed;
                }
            },
            m = outbound.recv() => match m {
                Some(data) => {
                    let msg = if std::str::from_utf8(&data).is_ok() {
                        match Utf8Bytes::try_from(data) {
                            Ok(t) => Message::Text(t),
                            Err(_) => return WsEnd::Closed,
                        }
                    } else {
                        Message::Binary(data)
                    };
                    if ws.send(msg).await.is_err() {
                        return WsEnd::Closed;
                    }
                }
                None => {
                    let _ = ws.close(None).await;
                    return WsEnd::Closed;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(protocol: Option<&str>, origin: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/");
        if let Some(p) = protocol {
            b = b.header("Sec-WebSocket-Protocol", p);
        }
        if let Some(o) = origin {
            b = b.header("Origin", o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn upgrade_needs_the_sip_subprotocol() {
        let cfg = WsConfig::default();
        let e = check_upgrade(&cfg, &req(None, None), Response::default()).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = check_upgrade(&cfg, &req(Some("chat"), None), Response::default()).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let ok = check_upgrade(&cfg, &req(Some("chat, SIP"), None), Response::default()).unwrap();
        assert_eq!(ok.headers()["sec-websocket-protocol"], "sip");
    }

    #[test]
    fn origin_allow_list() {
        let cfg = WsConfig {
            origins: vec!["https://desk.example".into()],
        };
        assert!(
            check_upgrade(
                &cfg,
                &req(Some("sip"), Some("https://DESK.example")),
                Response::default()
            )
            .is_ok()
        );
        let e = check_upgrade(
            &cfg,
            &req(Some("sip"), Some("https://evil.example")),
            Response::default(),
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let e = check_upgrade(&cfg, &req(Some("sip"), None), Response::default()).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
    }
}
