//! Hotline's media engine: SDP offer/answer, RTP/RTCP port allocation, the RTP relay
//! between two call legs, prompts and music on hold, DTMF and call recording.
//!
//! Logic lives in sans-IO types that take the current time as an argument (the relay
//! core, the player, the DTMF state machines, the recorder's aligner); thin tokio
//! tasks around them own the sockets and timers. The crate knows nothing of SIP.

pub mod error;
pub mod g711;
pub mod ports;
pub mod sdp;

pub use error::{MediaError, Result};
pub mod dtmf;
pub mod leg;
pub mod player;
pub mod prompts;
pub mod recorder;
pub mod rtcp;
pub mod session;
pub mod wav;
