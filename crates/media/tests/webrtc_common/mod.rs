//! A `webrtc`-crate peer playing the browser agent: it answers Hotline's offer (or makes
//! its own, calling out) with a G.711 + telephone-event media engine (as Chrome would),
//! sends RTP on its own track and hands every received RTP packet to the test. Shared by the WebRTC tests and the
//! benchmark.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState,
};
pub use webrtc::rtp_transceiver::RTCRtpTransceiverDirection;

pub const GUARD: Duration = Duration::from_secs(10);

fn codec(mime: &str, pt: u8, fmtp: &str) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 8000,
            channels: 1,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    rtp: mpsc::UnboundedSender<rtc::rtp::Packet>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let tx = self.rtp.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                let sent = match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => tx.send(p).is_ok(),
                    TrackRemoteEvent::OnEnded => false,
                    _ => true,
                };
                if !sent {
                    break;
                }
            }
        });
    }
}

/// The fake browser.
pub struct Browser {
    pub pc: Box<dyn PeerConnection>,
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
    pub rtp: mpsc::UnboundedReceiver<rtc::rtp::Packet>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    seq: u16,
    ts: u32,
}

impl Browser {
    /// Answers `offer` (Hotline's) and returns the browser with its answer SDP.
    pub async fn answer(offer: &str) -> (Browser, String) {
        Self::start(Some(offer)).await
    }

    /// A browser calling out: returns it with its offer; [`Browser::accept`] takes the
    /// answer.
    pub async fn call() -> (Browser, String) {
        Self::start(None).await
    }

    async fn start(offer: Option<&str>) -> (Browser, String) {
        let mut me = MediaEngine::default();
        me.register_codec(codec(MIME_TYPE_PCMU, 0, ""), RtpCodecKind::Audio)
            .unwrap();
        me.register_codec(codec(MIME_TYPE_PCMA, 8, ""), RtpCodecKind::Audio)
            .unwrap();
        me.register_codec(
            codec(MIME_TYPE_TELEPHONE_EVENT, 101, "0-16"),
            RtpCodecKind::Audio,
        )
        .unwrap();
        let (gathered, mut gathered_rx) = watch::channel(false);
        let (state, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (rtp_tx, rtp) = mpsc::unbounded_channel();
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(me)
            .with_handler(Arc::new(Handler {
                gathered,
                state,
                rtp: rtp_tx,
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("browser peer");
        let ssrc: u32 = rand::random();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "browser".to_owned(),
            "browser-audio".to_owned(),
            "browser-audio".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                ..Default::default()
            }],
        )));
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .expect("track");
        if let Some(offer) = offer {
            pc.set_remote_description(RTCSessionDescription::offer(offer.to_owned()).unwrap())
                .await
                .expect("Hotline's offer is acceptable");
            let answer = pc.create_answer(None).await.expect("answer");
            pc.set_local_description(answer).await.expect("local");
        } else {
            let offer = pc.create_offer(None).await.expect("offer");
            pc.set_local_description(offer).await.expect("local");
        }
        tokio::time::timeout(GUARD, gathered_rx.wait_for(|g| *g))
            .await
            .expect("gathering in time")
            .unwrap();
        let sdp = pc.local_description().await.expect("local sdp").sdp;
        (
            Browser {
                pc: Box::new(pc),
                track,
                ssrc,
                rtp,
                state: state_rx,
                seq: rand::random(),
                ts: rand::random(),
            },
            sdp,
        )
    }

    /// Waits until DTLS-SRTP is up.
    pub async fn connected(&mut self) {
        tokio::time::timeout(
            GUARD,
            self.state
                .wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("browser connected in time")
        .unwrap();
    }

    /// Sends one RTP packet on the browser's track.
    pub async fn send(&mut self, pt: u8, marker: bool, advance: u32, payload: &[u8]) {
        self.seq = self.seq.wrapping_add(1);
        let pkt = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker,
                payload_type: pt,
                sequence_number: self.seq,
                timestamp: self.ts,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        self.ts = self.ts.wrapping_add(advance);
        self.track.write_rtp(pkt).await.expect("browser write_rtp");
    }

    /// The timestamp the next packet will carry (for RFC 4733 events, which keep one).
    pub fn hold_ts(&mut self, back: u32) {
        self.ts = self.ts.wrapping_sub(back);
    }

    /// A new offer on the running connection (as a browser's re-INVITE carries): the
    /// audio transceiver's direction set to `direction` (`Sendonly` = hold), with an ICE
    /// restart when `restart`.
    pub async fn reoffer(
        &mut self,
        direction: RTCRtpTransceiverDirection,
        restart: bool,
    ) -> String {
        for t in self.pc.get_transceivers().await {
            t.set_direction(direction).await.expect("direction");
        }
        if restart {
            self.pc.restart_ice().await.expect("ICE restart");
        }
        let offer = self.pc.create_offer(None).await.expect("re-offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("local re-offer");
        self.pc.local_description().await.expect("re-offer sdp").sdp
    }

    /// Applies Hotline's answer to [`Browser::reoffer`] or [`Browser::call`].
    pub async fn accept(&mut self, answer: &str) {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer.to_owned()).unwrap())
            .await
            .expect("Hotline's re-answer is acceptable");
    }

    /// Answers Hotline's offer on the running connection (the 2xx to an offer-less
    /// re-INVITE), the audio transceiver set to `direction` first (`Sendonly` = hold).
    pub async fn answer_offer(
        &mut self,
        offer: &str,
        direction: RTCRtpTransceiverDirection,
    ) -> String {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer.to_owned()).unwrap())
            .await
            .expect("Hotline's re-offer is acceptable");
        for t in self.pc.get_transceivers().await {
            t.set_direction(direction).await.expect("direction");
        }
        let answer = self.pc.create_answer(None).await.expect("answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("local answer");
        self.pc.local_description().await.expect("answer sdp").sdp
    }

    pub async fn close(self) {
        let _ = self.pc.close().await;
    }
}
