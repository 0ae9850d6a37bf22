//! Hotline's media engine: SDP offer/answer, RTP/RTCP port allocation, the RTP relay
//! between two call legs, prompts and music on hold, DTMF, call recording and G.711
//! mixing.
//!
//! Logic lives in sans-IO types that take the current time as an argument (the leg
//! state with latching/rewriting/RTCP/dead-leg timers, the player, the DTMF state
//! machines, the recorder's aligner); a thin tokio layer ([`session`]) owns the
//! sockets and timers, one task per call. The crate knows nothing of SIP.
//!
//! Typical use by the call path:
//! 1. `PortAllocator::bind` a port pair per leg; put its port in
//!    [`sdp::LocalMedia`] and answer the caller's offer with [`sdp::answer_offer`]
//!    (errors map to 400/488 via [`MediaError::sip_status`]).
//! 2. `MediaLeg::new(ports, LegConfig::from(&negotiated), timing)` and
//!    [`session::spawn_session`]; play prompts / music with `SessionHandle::play`.
//! 3. When the agent answers, `attach` its leg, `bridge`, and `record` with a tap from
//!    [`recorder::start_recording`]; `stop` the session and `finish` the recording.

pub mod dtmf;
pub mod error;
pub mod g711;
pub mod kernel;
pub mod leg;
pub mod mix;
pub mod player;
pub mod ports;
pub mod prompts;
pub mod recorder;
pub mod rtcp;
pub mod sdp;
pub mod session;
pub mod shared;
pub mod wav;
pub mod webrtc;

pub use error::{MediaError, Result};
pub use leg::{LegConfig, LegEvent, LegTiming};
pub use player::{Player, Prompt};
pub use ports::PortAllocator;
pub use session::{MediaEvent, MediaLeg, SessionHandle, Side, spawn_session};
pub use shared::{SharedPort, SharedPortStats};
pub use webrtc::{Reanswer, WebRtcControl, WebRtcLeg, WebRtcSettings, WebRtcStats};
