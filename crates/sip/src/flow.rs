//! Where a message came from / goes to.
//!
//! A [`Flow`] carries its [`Transport`], so call control can tell what reached it: a
//! browser softphone registers over [`Transport::Ws`] or [`Transport::Wss`] (its Contact
//! host is usually a made-up `*.invalid`, reachable only over that connection), a desk
//! phone over UDP, TCP or TLS. [`Transport::is_websocket`] is the test for "this contact
//! needs a WebRTC media leg".

use std::net::SocketAddr;

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26, `sips:` / `;transport=tls`).
    Tls,
    /// SIP over WebSocket (RFC 7118), plain.
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

impl Transport {
    /// The token used in Via headers.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The `;transport=` URI parameter for a Contact or Record-Route reached over this
    /// transport (none for UDP, the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
            Transport::Ws => ";transport=ws",
            Transport::Wss => ";transport=wss",
        }
    }

    /// Parses a `transport` URI parameter or Via token (case-insensitive).
    pub fn from_token(t: &str) -> Option<Transport> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|x| x.via_token().eq_ignore_ascii_case(t))
    }

    /// Reliable transports have no retransmission timers (§17.1.1.2).
    pub fn reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// A WebSocket flow: a browser (or other RFC 7118) client. Hotline cannot open such a
    /// flow itself; requests reach the client only over the connection it registered on.
    /// Whether a peer on this transport is only reachable over the connection it opened
    /// (Hotline does not dial TLS or WebSocket connections out to phones).
    pub fn connection_bound(self) -> bool {
        matches!(self, Transport::Tls | Transport::Ws | Transport::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// Messages arrive whole (a datagram or a WebSocket frame), not cut out of a byte
    /// stream by Content-Length.
    pub fn message_framed(self) -> bool {
        matches!(self, Transport::Udp | Transport::Ws | Transport::Wss)
    }
}

/// A transport flow: our local socket address and the peer's. For connection-oriented
/// transports it names the connection, so responses and requests to a registered
/// contact reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// An outgoing message: the IO layer sends `data` on `flow` (for TCP, opening a connection
/// to `flow.remote` when none exists; TLS and WebSocket flows must already be open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub flow: Flow,
    pub data: bytes::Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ] {
            assert_eq!(Transport::from_token(t.via_token()), Some(t));
            assert_eq!(
                Transport::from_token(&t.via_token().to_lowercase()),
                Some(t)
            );
        }
        assert_eq!(Transport::from_token("sctp"), None);
        assert!(Transport::Wss.is_websocket() && !Transport::Tls.is_websocket());
        assert!(Transport::Tls.reliable() && !Transport::Udp.reliable());
    }
}
