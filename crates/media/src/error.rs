//! The crate's one error type.

use std::io;

/// Everything that can go wrong in the media engine.
///
/// SDP errors are split so the SIP layer can pick the status code without looking at
/// text: [`MediaError::SdpMalformed`] → 400, [`MediaError::SdpNotAcceptable`] → 488.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The SDP body could not be parsed (syntax, missing mandatory lines, limits).
    #[error("malformed SDP at line {line}: {reason}")]
    SdpMalformed {
        /// 1-based line number (0 when the problem is not tied to a line).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The SDP parsed but offers nothing we can use (no audio, no common codec, ...).
    #[error("SDP not acceptable: {0}")]
    SdpNotAcceptable(&'static str),
    /// The RTP port range has no free pair left.
    #[error("no free RTP port pair in range {first}-{last}")]
    PortsExhausted {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// The configured port range cannot hold a single even/odd pair.
    #[error("invalid RTP port range {first}-{last}")]
    InvalidPortRange {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// A WAV file is malformed or in a format we do not play.
    #[error("WAV: {0}")]
    Wav(&'static str),
    /// Writing a WAV file failed.
    #[error("WAV write: {0}")]
    WavWrite(#[from] hound::Error),
    /// A DTMF payload or SIP INFO body is malformed.
    #[error("DTMF: {0}")]
    Dtmf(&'static str),
    /// An RTCP packet is malformed.
    #[error("RTCP: {0}")]
    Rtcp(&'static str),
    /// A socket or file operation failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The WebRTC gateway refused something (a browser's datagram, a negotiation step).
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// A background task went away (e.g. the recorder writer).
    #[error("task stopped: {0}")]
    TaskGone(&'static str),
    /// A leg on the shared media port is known by its remote address, which another leg
    /// there already has (the caller gives this leg ports of its own instead).
    #[error("remote media address {0} already has a leg on the shared port")]
    SharedAddressTaken(std::net::SocketAddr),
    /// A browser leg's ICE username fragment is another leg's on the shared port.
    #[error("ICE username fragment {0:?} already has a leg on the shared port")]
    SharedIceTaken(String),
    /// The in-kernel relay could not be set up or changed (what was being done, and the
    /// kernel's or loader's reason: often a missing CAP_BPF / CAP_NET_ADMIN).
    #[error("kernel relay: {what}: {reason}")]
    KernelRelay {
        /// The step that failed.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The session cannot do this now (a third party is already there, or none is).
    #[error("media session busy: {0}")]
    Busy(&'static str),
}

impl MediaError {
    /// The SIP status a UAS should answer an INVITE with when SDP handling failed
    /// (400 for malformed, 488 for not acceptable, 500 otherwise).
    pub fn sip_status(&self) -> u16 {
        match self {
            MediaError::SdpMalformed { .. } => 400,
            MediaError::SdpNotAcceptable(_) => 488,
            _ => 500,
        }
    }
}

/// Result alias for the crate.
pub type Result<T> = std::result::Result<T, MediaError>;
