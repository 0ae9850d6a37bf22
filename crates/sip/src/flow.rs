//! Where a message came from / goes to.

use std::net::SocketAddr;

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The token used in Via headers.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// Reliable transports have no retransmission timers (§17.1.1.2).
    pub fn reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }
}

/// A transport flow: our local socket address and the peer's. For TCP it names the
/// connection, so responses and requests to a registered contact reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// An outgoing message: the IO layer sends `data` on `flow` (for TCP, opening a connection
/// to `flow.remote` when none exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub flow: Flow,
    pub data: bytes::Bytes,
}
