//! The WebRTC media gateway: a browser agent's leg (ICE, DTLS-SRTP, rtcp-mux) bridged to
//! the call's plain RTP without transcoding.
//!
//! Two layers, as in the rest of the crate:
//! - [`WebRtcPeer`]: sans-IO, one peer connection of the `rtc` crate (the sans-IO core
//!   under the `webrtc` crate) with a G.711-only media engine, so the browser can only
//!   pick PCMU/PCMA and the payload passes through untouched; telephone-event is
//!   registered explicitly (without it the browser drops RFC 4733 from its answer).
//! - [`WebRtcLeg`] and [`BrowserLink`]: the tokio side. A `WebRtcLeg` holds the public
//!   socket while the offer is out; once the answer is in, [`WebRtcLeg::connect`] turns
//!   it into a [`MediaLeg`] on that same socket, carrying the peer in a `BrowserLink`.
//!   The media session that holds the leg reads the socket itself, decrypts inline and
//!   hands the plain RTP to the same relay path as a SIP phone's: latching,
//!   SSRC/sequence/timestamp rewriting when the source changes (music → agent), hold
//!   music, recording taps and RFC 4733 both ways work unchanged; what it sends to the
//!   leg is encrypted on the way out. One port pair per browser leg, no second task.
//!
//! The lean media path: once DTLS-SRTP is up, RTP no longer goes through the peer
//! connection (its demux, handler chain, event queue and per-packet parameter checks
//! cost ~10,000 instructions a packet). A [`KeyTap`] crypto provider sees the SRTP
//! master keys as the connection derives its session keys, and two SRTP contexts of
//! our own keyed from them decrypt the browser's RTP and encrypt ours. STUN, DTLS and
//! RTCP stay on the peer connection, and every [`LEAN_SAMPLE`]th packet to the browser
//! still goes through it so its ICE-selected destination is followed.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateServerReflexiveConfig, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::srtp::context::Context as SrtpContext;
use rtc::srtp::protection_profile::ProtectionProfile;
use tokio::sync::{mpsc, oneshot};

use crate::error::{MediaError, Result};
use crate::leg::{LegConfig, LegTiming, MAX_PACKET};
use crate::ports::{BoundPorts, PortAllocator, RtpSocket};
use crate::sdp::{Codec, Direction};
use crate::session::MediaLeg;
use crate::shared::SharedPort;

/// How Hotline presents itself to browsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcSettings {
    /// Address the public (ICE/DTLS/SRTP) socket binds to and advertises as a host
    /// candidate.
    pub ip: IpAddr,
    /// An address in front of `ip` (1:1 NAT, cloud public IP), advertised as a
    /// server-reflexive candidate on the same port; browsers outside try it first.
    pub public_ip: Option<IpAddr>,
    /// Codecs offered, in order of preference (put the caller's codec first and the
    /// browser will usually pick it, so nothing is translated).
    pub codecs: Vec<Codec>,
    /// telephone-event payload type; `None` offers no RFC 4733.
    pub telephone_event: Option<u8>,
    /// How long ICE + DTLS may take before the leg is reported failed.
    pub connect_timeout: Duration,
    /// ICE-lite (RFC 8445 §2.5): `a=ice-lite`, host candidates only (`ip` and
    /// `public_ip`), the browser controls and runs the checks. For servers with a
    /// reachable address; full ICE (the default) also checks from our side.
    pub ice_lite: bool,
    /// Whether media may take the lean path once DTLS-SRTP is up (the default); `false`
    /// keeps every packet on the peer connection, as before the lean path (benchmarks
    /// compare the two).
    pub lean: bool,
}

impl WebRtcSettings {
    /// PCMU then PCMA, telephone-event on 101, no public address, 10 s to connect, lean
    /// media path.
    pub fn new(ip: IpAddr) -> Self {
        WebRtcSettings {
            ip,
            public_ip: None,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: Some(101),
            connect_timeout: Duration::from_secs(10),
            ice_lite: false,
            lean: true,
        }
    }
}

/// What the browser agreed to, in the terms of a plain leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebRtcMedia {
    /// The audio codec (the first G.711 codec of the answer).
    pub codec: Codec,
    /// Its payload type.
    pub payload_type: u8,
    /// telephone-event payload type, if both sides have it.
    pub telephone_event: Option<u8>,
}

/// Hotline's answer to a browser's re-offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reanswer {
    /// The WebRTC answer SDP for the 2xx.
    pub sdp: String,
    /// What the renegotiation settled on.
    pub media: WebRtcMedia,
    /// Our direction towards the browser: `RecvOnly`/`Inactive` when it holds the call.
    pub direction: Direction,
}

/// The first `a=setup:` value of an SDP.
fn setup_of(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=setup:"))
        .map(str::trim)
}

/// The direction of the first audio section of an offer, as its sender sees it
/// (`sendrecv` when absent, RFC 3264 §5.1).
pub fn offer_direction(sdp: &str) -> Direction {
    let (mut seen_m, mut in_audio) = (false, false);
    let mut session = Direction::SendRecv;
    let mut audio = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            seen_m = true;
            in_audio = m.starts_with("audio ");
            continue;
        }
        let d = match line {
            "a=sendrecv" => Direction::SendRecv,
            "a=sendonly" => Direction::SendOnly,
            "a=recvonly" => Direction::RecvOnly,
            "a=inactive" => Direction::Inactive,
            _ => continue,
        };
        if in_audio {
            audio = Some(d);
        } else if !seen_m {
            session = d;
        }
    }
    audio.unwrap_or(session)
}

/// Connection state of a browser leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebRtcState {
    /// ICE/DTLS in progress.
    Connecting = 0,
    /// DTLS-SRTP is up; media flows.
    Connected = 1,
    /// ICE or DTLS failed, timed out, or the browser closed the connection.
    Failed = 2,
    /// The leg was released.
    Closed = 3,
}

impl WebRtcState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => WebRtcState::Connecting,
            1 => WebRtcState::Connected,
            2 => WebRtcState::Failed,
            _ => WebRtcState::Closed,
        }
    }
}

fn rtc_err(what: &'static str) -> impl FnOnce(rtc::shared::error::Error) -> MediaError {
    move |e| MediaError::WebRtc(format!("{what}: {e}"))
}

fn codec_params(mime: &str, pt: u8, fmtp: &str) -> RTCRtpCodecParameters {
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

fn mime_of(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => MIME_TYPE_PCMU,
        Codec::Pcma => MIME_TYPE_PCMA,
    }
}

/// A G.711-only media engine: the browser cannot choose Opus, so packets pass through.
fn media_engine(settings: &WebRtcSettings) -> Result<MediaEngine> {
    let mut me = MediaEngine::default();
    for c in &settings.codecs {
        me.register_codec(
            codec_params(mime_of(*c), c.payload_type(), ""),
            RtpCodecKind::Audio,
        )
        .map_err(rtc_err("codec"))?;
    }
    if let Some(pt) = settings.telephone_event {
        me.register_codec(
            codec_params(MIME_TYPE_TELEPHONE_EVENT, pt, "0-16"),
            RtpCodecKind::Audio,
        )
        .map_err(rtc_err("telephone-event"))?;
    }
    Ok(me)
}

/// Counters of one browser leg, shared with whoever holds a [`WebRtcStats`] handle.
#[derive(Debug, Default)]
struct Counters {
    from_browser: AtomicU64,
    to_browser: AtomicU64,
    rejected: AtomicU64,
    state: AtomicU8,
    lean: std::sync::atomic::AtomicBool,
}

/// A live view of a browser leg's counters and state (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct WebRtcStats(Arc<Counters>);

impl WebRtcStats {
    /// Decrypted RTP packets received from the browser and handed to the call.
    pub fn from_browser(&self) -> u64 {
        self.0.from_browser.load(Ordering::Relaxed)
    }
    /// RTP packets encrypted and sent to the browser.
    pub fn to_browser(&self) -> u64 {
        self.0.to_browser.load(Ordering::Relaxed)
    }
    /// Datagrams or packets refused (garbage, failed SRTP, not negotiated).
    pub fn rejected(&self) -> u64 {
        self.0.rejected.load(Ordering::Relaxed)
    }
    /// Whether media takes the lean path (our own SRTP contexts, past the peer
    /// connection).
    pub fn lean(&self) -> bool {
        self.0.lean.load(Ordering::Relaxed)
    }
    /// Current connection state.
    pub fn state(&self) -> WebRtcState {
        WebRtcState::from_u8(self.0.state.load(Ordering::Relaxed))
    }
    fn set_state(&self, s: WebRtcState) {
        self.0.state.store(s as u8, Ordering::Relaxed);
    }
}

/// Every how many packets to the browser one still goes through the peer connection:
/// where it sends SRTP is where ICE says the browser is (it may move on an ICE restart
/// or a nomination change), and the lean path sends to the same place. At 50 packets/s,
/// once a second.
const LEAN_SAMPLE: u32 = 50;

/// The SRTP profiles offered in DTLS, in order of preference: the `rtc` crate's default
/// without AES_CM_128_HMAC_SHA1_32, which browsers do not enable by default (RFC 8827
/// requires only _80). A tapped AES-CM key is then an _80 one, which the key derivation
/// calls alone could not tell.
const SRTP_PROFILES: [SrtpProtectionProfile; 3] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
];

/// Decrypted packets the lean path holds for [`WebRtcPeer::poll_rtp`] at most.
const INBOX_MAX: usize = 64;

/// SRTP replay window of the lean path's receiving context (as the peer connection's).
const REPLAY_WINDOW: usize = 64;

/// One SRTP master key as the peer connection's key derivation used it.
#[derive(Clone)]
struct TappedKey {
    key: Vec<u8>,
    /// The first key-derivation input block: the master salt XOR label 0 with index 0
    /// (RFC 3711 §4.3.1), so its first `salt_len` bytes are the master salt.
    block: [u8; 16],
    /// The AEAD the derived session key went into: `None` for AES-CM (HMAC-SHA1, _80
    /// only: see [`SRTP_PROFILES`]).
    aead: Option<AeadAlgorithm>,
    /// Whether the first cipher built after this key's first derivation was seen.
    typed: bool,
}

/// A crypto provider that forwards everything to the default one and notes the SRTP
/// master keys on their way through the key derivation (the `rtc` crate does not
/// expose the DTLS exporter's keying material). The connection derives the local
/// context's keys first, then the remote one's, each starting with label 0; block
/// encryption is used by nothing else.
struct KeyTap {
    inner: Arc<dyn RTCCryptoProvider>,
    keys: Mutex<Vec<TappedKey>>,
}

impl KeyTap {
    fn new() -> Result<Arc<Self>> {
        let inner = rtc::crypto::default_provider()
            .map_err(|e| MediaError::WebRtc(format!("crypto provider: {e}")))?;
        Ok(Arc::new(KeyTap {
            inner,
            keys: Mutex::new(Vec::new()),
        }))
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Vec<TappedKey>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the kind of cipher the last new key went into.
    fn typed(&self, aead: Option<AeadAlgorithm>) {
        if let Some(k) = self.keys().last_mut().filter(|k| !k.typed) {
            k.typed = true;
            k.aead = aead;
        }
    }

    /// How many master keys were seen so far.
    fn count(&self) -> usize {
        self.keys().len()
    }

    /// The local (encrypting) and remote (decrypting) contexts from the last pair of
    /// keys, and a second, decrypting context keyed like the local one (to check it
    /// against the peer connection's own SRTP).
    fn contexts(&self) -> Option<(SrtpContext, SrtpContext, SrtpContext)> {
        let keys = self.keys().clone();
        let [local, remote] = keys.get(keys.len().checked_sub(2)?..)? else {
            return None;
        };
        let crypto = self.inner.crypto();
        let make = |k: &TappedKey, replay: bool| {
            let profile = match (k.aead, k.key.len()) {
                (Some(AeadAlgorithm::Aes128Gcm), 16) => ProtectionProfile::AeadAes128Gcm,
                (Some(AeadAlgorithm::Aes256Gcm), 32) => ProtectionProfile::AeadAes256Gcm,
                (None, 16) if k.typed => ProtectionProfile::Aes128CmHmacSha1_80,
                _ => return None,
            };
            let salt = k.block.get(..profile.salt_len())?;
            let (rtp, rtcp) = if replay {
                (
                    Some(rtc::srtp::option::srtp_replay_protection(REPLAY_WINDOW)),
                    Some(rtc::srtp::option::srtcp_replay_protection(REPLAY_WINDOW)),
                )
            } else {
                (None, None)
            };
            SrtpContext::new(&k.key, salt, profile, rtp, rtcp, crypto).ok()
        };
        Some((
            make(local, false)?,
            make(remote, true)?,
            make(local, false)?,
        ))
    }
}

impl RTCCryptoProvider for KeyTap {
    fn name(&self) -> &'static str {
        "hotline-keytap"
    }
    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }
    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for KeyTap {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }
    fn hash(
        &self,
        algorithm: HashAlgorithm,
        data: &[u8],
    ) -> std::result::Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }
    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> std::result::Result<(), CryptoError> {
        {
            let mut keys = self.keys();
            if keys.last().is_none_or(|k| k.key != key)
                && let Ok(b) = <[u8; 16]>::try_from(&*block)
            {
                keys.push(TappedKey {
                    key: key.to_vec(),
                    block: b,
                    aead: None,
                    typed: false,
                });
            }
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }
    fn new_hmac(
        &self,
        algorithm: HmacAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }
    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn StreamCipher>, CryptoError> {
        self.typed(None);
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }
    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn AeadCipher>, CryptoError> {
        self.typed(Some(algorithm));
        self.inner.crypto().new_aead(algorithm, key)
    }
    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> std::result::Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }
    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> std::result::Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }
    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> std::result::Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }
    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> std::result::Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }
    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

/// The lean media path of a connected browser leg: our own SRTP contexts, keyed like
/// the peer connection's.
struct Lean {
    /// Encrypts RTP to the browser (no replay check on the sending side).
    local: SrtpContext,
    /// Decrypts the browser's RTP, with replay protection.
    remote: SrtpContext,
    /// Where the peer connection last sent SRTP (the ICE-selected pair).
    dest: Option<SocketAddr>,
    /// Whether a packet from the browser authenticated with `remote` (until then a
    /// failure falls back to the peer connection, in case the keys were misread).
    verified: bool,
    /// The (SSRC, sequence number) of the last packet from the browser that `remote`
    /// refused before it was verified: if the peer connection accepts that same packet,
    /// the tapped receiving key is wrong.
    refused: Option<(u32, u16)>,
    /// Until the sending key is verified: a context keyed like `local` that must
    /// authenticate the peer connection's own SRTP (its first packet to the browser).
    /// Nothing goes the lean way to the browser before that.
    check: Option<SrtpContext>,
    /// Packets to the browser so far (every [`LEAN_SAMPLE`]th goes the full way).
    sent: u32,
    /// The SSRC-rewritten plain packet being encrypted (reused).
    scratch: Vec<u8>,
}

/// The SSRC and sequence number of an RTP packet at least a header long.
fn rtp_id(data: &[u8]) -> (u32, u16) {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    (
        u32::from_be_bytes([at(8), at(9), at(10), at(11)]),
        u16::from_be_bytes([at(2), at(3)]),
    )
}

/// An RTP (not RTCP, RFC 5761 §4) packet on a muxed port.
fn is_rtp(data: &[u8]) -> bool {
    matches!(data.first(), Some(128..=191))
        && !matches!(data.get(1).map(|b| b & 0x7f), Some(64..=95))
}

/// Sans-IO: one browser's peer connection, fed with datagrams and the time.
pub struct WebRtcPeer {
    pc: RTCPeerConnection,
    local: SocketAddr,
    sender: RTCRtpSenderId,
    ssrc: u32,
    state: WebRtcState,
    deadline: Instant,
    stats: WebRtcStats,
    /// Our DTLS role from the first offer/answer (`active`/`passive`), kept in re-answers.
    dtls_setup: Option<&'static str>,
    /// What the last offer/answer settled on.
    media: Option<WebRtcMedia>,
    /// Sees the SRTP master keys the connection derives.
    tap: Arc<KeyTap>,
    /// The lean media path, once DTLS-SRTP is up.
    lean: Option<Lean>,
    /// How many tapped keys the lean path was built from.
    keys_used: usize,
    /// [`WebRtcSettings::lean`].
    allow_lean: bool,
    /// Decrypted RTP from the lean path, for [`WebRtcPeer::poll_rtp`].
    inbox: VecDeque<BytesMut>,
    /// Encrypted RTP from the lean path, for [`WebRtcPeer::poll_transmit`].
    outbox: VecDeque<(SocketAddr, BytesMut)>,
    /// The peer connection was driven since its output was last drained: it may have
    /// datagrams to send (a lean batch leaves it alone).
    pc_dirty: bool,
    /// The peer connection was driven since its deadline was last read.
    pc_stale: bool,
    /// The peer connection was given datagrams since its input was last drained.
    pc_reads: bool,
}

impl std::fmt::Debug for WebRtcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcPeer")
            .field("local", &self.local)
            .field("ssrc", &self.ssrc)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl WebRtcPeer {
    fn build(settings: &WebRtcSettings, local: SocketAddr, now: Instant) -> Result<Self> {
        let tap = KeyTap::new()?;
        let setting_engine = SettingEngineBuilder::new()
            .with_lite(settings.ice_lite)
            .with_crypto_provider(tap.clone())
            .with_srtp_protection_profiles(SRTP_PROFILES.to_vec())
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_media_engine(media_engine(settings)?)
            .build(now)
            .map_err(rtc_err("peer connection"))?;
        let ssrc: u32 = rand::random();
        if settings.codecs.is_empty() {
            return Err(MediaError::SdpNotAcceptable("no codec configured"));
        }
        let track = MediaStreamTrack::new(
            "hotline".to_owned(),
            format!("hotline-audio-{ssrc:08x}"),
            "hotline".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                // No codec here: a track's codec narrows the offer to that one codec
                // (and drops telephone-event); the media engine's list is the offer.
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).map_err(rtc_err("track"))?;
        Ok(WebRtcPeer {
            pc,
            local,
            sender,
            ssrc,
            state: WebRtcState::Connecting,
            deadline: now + settings.connect_timeout,
            stats: WebRtcStats::default(),
            dtls_setup: None,
            media: None,
            tap,
            lean: None,
            keys_used: 0,
            allow_lean: settings.lean,
            inbox: VecDeque::new(),
            outbox: VecDeque::new(),
            pc_dirty: true,
            pc_stale: true,
            pc_reads: true,
        })
    }

    fn add_candidates(&mut self, settings: &WebRtcSettings) -> Result<()> {
        let (ip, port) = (self.local.ip().to_string(), self.local.port());
        let base = |address: String| CandidateConfig {
            network: "udp".to_owned(),
            address,
            port,
            component: 1,
            ..Default::default()
        };
        let host = CandidateHostConfig {
            base_config: base(ip.clone()),
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(rtc_err("host candidate"))?;
        let mut candidates = vec![RTCIceCandidate::from(&host)];
        let public = settings.public_ip.filter(|p| *p != self.local.ip());
        if let Some(public) = public.filter(|_| settings.ice_lite) {
            // A lite agent has host candidates only; the public one is never matched by
            // incoming checks (they arrive on `local`, after the NAT), which is fine for
            // a lite agent: it only answers them.
            let host = CandidateHostConfig {
                base_config: base(public.to_string()),
                ..Default::default()
            }
            .new_candidate_host()
            .map_err(rtc_err("public candidate"))?;
            candidates.push(RTCIceCandidate::from(&host));
        } else if let Some(public) = public {
            let srflx = CandidateServerReflexiveConfig {
                base_config: base(public.to_string()),
                rel_addr: ip,
                rel_port: port,
                url: None,
            }
            .new_candidate_server_reflexive()
            .map_err(rtc_err("public candidate"))?;
            candidates.push(RTCIceCandidate::from(&srflx));
        }
        for c in candidates {
            let init = c.to_json().map_err(rtc_err("candidate"))?;
            self.pc
                .add_local_candidate(init)
                .map_err(rtc_err("candidate"))?;
        }
        Ok(())
    }

    /// Hotline's offer to a browser (Hotline INVITEs the agent): audio sendrecv, DTLS
    /// actpass, rtcp-mux, our candidates on `local` (the socket's address).
    pub fn offer(
        settings: &WebRtcSettings,
        local: SocketAddr,
        now: Instant,
    ) -> Result<(Self, String)> {
        let mut p = Self::build(settings, local, now)?;
        p.add_candidates(settings)?;
        let offer = p.pc.create_offer(None).map_err(rtc_err("offer"))?;
        p.pc.set_local_description(now, offer)
            .map_err(rtc_err("local offer"))?;
        let sdp = p.local_sdp()?;
        Ok((p, sdp))
    }

    /// Answers a browser's offer (an agent's browser calling in, or its re-INVITE).
    pub fn answer(
        settings: &WebRtcSettings,
        local: SocketAddr,
        offer: &str,
        now: Instant,
    ) -> Result<(Self, String, WebRtcMedia)> {
        let mut p = Self::build(settings, local, now)?;
        let desc = RTCSessionDescription::offer(offer.to_owned()).map_err(|_| {
            MediaError::SdpMalformed {
                line: 0,
                reason: "browser offer does not parse",
            }
        })?;
        p.pc.set_remote_description(now, desc)
            .map_err(|_| MediaError::SdpNotAcceptable("browser offer not usable"))?;
        p.add_candidates(settings)?;
        let answer = p.pc.create_answer(None).map_err(rtc_err("answer"))?;
        p.pc.set_local_description(now, answer)
            .map_err(rtc_err("local answer"))?;
        let media = p.negotiated()?;
        let sdp = p.local_sdp()?;
        p.dtls_setup = match setup_of(&sdp) {
            Some("active") => Some("active"),
            Some("passive") => Some("passive"),
            _ => None,
        };
        Ok((p, sdp, media))
    }

    /// A new offer from the browser in the same dialog (re-INVITE: hold, resume, ICE
    /// restart, codec change): answered by this same peer connection, so DTLS and ICE
    /// carry on (new ICE credentials in the offer restart ICE). An offer that cannot be
    /// used is rolled back and changes nothing (RFC 3261 §14.2).
    pub fn reoffer(&mut self, offer: &str, now: Instant) -> Result<Reanswer> {
        self.touch();
        let desc = RTCSessionDescription::offer(offer.to_owned()).map_err(|_| {
            MediaError::SdpMalformed {
                line: 0,
                reason: "browser offer does not parse",
            }
        })?;
        let peer_direction = offer_direction(offer);
        let ours = Direction::answer_to(peer_direction, Direction::SendRecv);
        // The `rtc` crate stops a transceiver an offer makes inactive (it could not
        // resume), so it sees `sendonly` instead and our answer says `inactive`.
        let desc = if peer_direction == Direction::Inactive {
            RTCSessionDescription::offer(offer.replace("a=inactive", "a=sendonly")).unwrap_or(desc)
        } else {
            desc
        };
        self.pc
            .set_remote_description(now, desc)
            .map_err(|_| MediaError::SdpNotAcceptable("browser offer not usable"))?;
        let answered = self
            .reanswer(now, ours)
            .and_then(|sdp| Ok((sdp, self.negotiated()?)));
        let (sdp, media) = match answered {
            Ok(m) => m,
            Err(e) => {
                if let Ok(rb) = RTCSessionDescription::rollback(None) {
                    let _ = self.pc.set_remote_description(now, rb);
                }
                return Err(e);
            }
        };
        self.update_state(now);
        Ok(Reanswer {
            sdp,
            media,
            direction: ours,
        })
    }

    /// Creates and applies the answer to a re-offer: our direction set first (the `rtc`
    /// crate answers with the transceiver's own direction, not the offer's complement),
    /// and our DTLS role kept (it would answer `active` even where the first exchange
    /// made us `passive`, and browsers refuse a role change on a running transport).
    fn reanswer(&mut self, now: Instant, ours: Direction) -> Result<String> {
        let rtc_dir = match ours {
            Direction::SendRecv => RTCRtpTransceiverDirection::Sendrecv,
            Direction::SendOnly => RTCRtpTransceiverDirection::Sendonly,
            Direction::RecvOnly | Direction::Inactive => RTCRtpTransceiverDirection::Recvonly,
        };
        let ids: Vec<_> = self.pc.get_transceivers().collect();
        for id in ids {
            if let Some(mut t) = self.pc.rtp_transceiver(id) {
                t.set_direction(rtc_dir);
            }
        }
        let answer = self.pc.create_answer(None).map_err(rtc_err("answer"))?;
        // The crate refuses a changed local answer, and starts DTLS only on the first
        // exchange, so the fixes go into the text the browser gets, not into the crate.
        let mut sdp = answer.sdp.clone();
        if let (Some(role), Some(made)) = (self.dtls_setup, setup_of(&sdp)) {
            sdp = sdp.replace(&format!("a=setup:{made}"), &format!("a=setup:{role}"));
        }
        if ours == Direction::Inactive {
            sdp = sdp.replace("a=recvonly", "a=inactive");
        }
        self.pc
            .set_local_description(now, answer)
            .map_err(rtc_err("local answer"))?;
        Ok(sdp)
    }

    /// Our own offer on the running connection (the 2xx to an offer-less re-INVITE):
    /// sendrecv, same DTLS identity and ICE credentials, and `a=setup` our current role
    /// so the browser's answer cannot ask for a new DTLS association (RFC 8842 §5.5).
    /// [`WebRtcPeer::accept_reanswer`] applies the answer.
    pub fn offer_again(&mut self, now: Instant) -> Result<String> {
        self.touch();
        for id in self.pc.get_transceivers().collect::<Vec<_>>() {
            if let Some(mut t) = self.pc.rtp_transceiver(id) {
                t.set_direction(RTCRtpTransceiverDirection::Sendrecv);
            }
        }
        let offer = self.pc.create_offer(None).map_err(rtc_err("offer"))?;
        let mut sdp = offer.sdp.clone();
        if let (Some(role), Some(made)) = (self.dtls_setup, setup_of(&sdp)) {
            sdp = sdp.replace(&format!("a=setup:{made}"), &format!("a=setup:{role}"));
        }
        self.pc
            .set_local_description(now, offer)
            .map_err(rtc_err("local offer"))?;
        Ok(sdp)
    }

    /// Applies the browser's answer to [`WebRtcPeer::offer_again`]. Returns what it
    /// settled on and our direction (`RecvOnly`/`Inactive` when the browser holds). An
    /// answer that cannot be used changes nothing: the offer is rolled back and the
    /// connection goes on as before.
    pub fn accept_reanswer(
        &mut self,
        answer: &str,
        now: Instant,
    ) -> Result<(WebRtcMedia, Direction)> {
        self.touch();
        let rollback = |pc: &mut RTCPeerConnection| {
            if let Ok(rb) = RTCSessionDescription::rollback(None) {
                let _ = pc.set_local_description(now, rb);
            }
        };
        let peer_direction = offer_direction(answer);
        // As for re-offers: an `inactive` answer would stop the transceiver for good.
        let text = if peer_direction == Direction::Inactive {
            answer.replace("a=inactive", "a=recvonly")
        } else {
            answer.to_owned()
        };
        let Ok(desc) = RTCSessionDescription::answer(text) else {
            rollback(&mut self.pc);
            return Err(MediaError::SdpMalformed {
                line: 0,
                reason: "browser answer does not parse",
            });
        };
        if self.pc.set_remote_description(now, desc).is_err() {
            rollback(&mut self.pc);
            return Err(MediaError::SdpNotAcceptable("browser answer not usable"));
        }
        let media = self.negotiated()?;
        self.update_state(now);
        Ok((media, peer_direction.reversed()))
    }

    /// Applies the browser's answer to our offer.
    pub fn accept_answer(&mut self, answer: &str, now: Instant) -> Result<WebRtcMedia> {
        self.touch();
        let desc = RTCSessionDescription::answer(answer.to_owned()).map_err(|_| {
            MediaError::SdpMalformed {
                line: 0,
                reason: "browser answer does not parse",
            }
        })?;
        self.pc
            .set_remote_description(now, desc)
            .map_err(|_| MediaError::SdpNotAcceptable("browser answer not usable"))?;
        self.dtls_setup = match setup_of(answer) {
            Some("active") => Some("passive"),
            Some("passive") => Some("active"),
            _ => None,
        };
        self.negotiated()
    }

    /// Notes that the peer connection is being driven (output and timers may change).
    fn touch(&mut self) {
        self.pc_dirty = true;
        self.pc_stale = true;
    }

    fn local_sdp(&self) -> Result<String> {
        self.pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| MediaError::WebRtc("no local description".into()))
    }

    /// The codec and telephone-event the negotiation settled on.
    fn negotiated(&mut self) -> Result<WebRtcMedia> {
        let Some(mut sender) = self.pc.rtp_sender(self.sender) else {
            // Not sending (the browser holds): the codecs are those of the last exchange.
            return self
                .media
                .ok_or_else(|| MediaError::WebRtc("sender gone".into()));
        };
        let codecs = &sender.get_parameters().rtp_parameters.codecs;
        let audio = codecs.iter().find_map(|c| {
            let m = &c.rtp_codec.mime_type;
            if m.eq_ignore_ascii_case(MIME_TYPE_PCMU) {
                Some((Codec::Pcmu, c.payload_type))
            } else if m.eq_ignore_ascii_case(MIME_TYPE_PCMA) {
                Some((Codec::Pcma, c.payload_type))
            } else {
                None
            }
        });
        let te = codecs
            .iter()
            .find(|c| {
                c.rtp_codec
                    .mime_type
                    .eq_ignore_ascii_case(MIME_TYPE_TELEPHONE_EVENT)
            })
            .map(|c| c.payload_type);
        let (codec, payload_type) =
            audio.ok_or(MediaError::SdpNotAcceptable("browser chose no G.711 codec"))?;
        let media = WebRtcMedia {
            codec,
            payload_type,
            telephone_event: te,
        };
        self.media = Some(media);
        Ok(media)
    }

    /// The state after the last input.
    pub fn state(&self) -> WebRtcState {
        self.state
    }

    /// A datagram from the network. Garbage is refused with an error and changes
    /// nothing.
    pub fn handle_datagram(&mut self, src: SocketAddr, data: &[u8], now: Instant) -> Result<()> {
        if let Err(why) = demux_check(data) {
            self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(MediaError::WebRtc(why.into()));
        }
        if let Some(lean) = self.lean.as_mut().filter(|_| is_rtp(data)) {
            match lean.remote.decrypt_rtp(data) {
                Ok(plain) => {
                    lean.verified = true;
                    if self.inbox.len() >= INBOX_MAX {
                        // Not drained (never the case with the session's batches): the
                        // oldest goes, as a full socket buffer would drop it.
                        self.inbox.pop_front();
                        self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    self.inbox.push_back(plain);
                    return Ok(());
                }
                Err(e) if lean.verified => {
                    self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(MediaError::WebRtc(format!("srtp: {e}")));
                }
                // Not one packet authenticated yet: the peer connection decides (and
                // if it takes this packet, the tapped key is wrong: see `poll_rtp`).
                Err(_) => lean.refused = Some(rtp_id(data)),
            }
        }
        self.touch();
        self.pc_reads = true;
        let r = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: src,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
        self.update_state(now);
        self.go_lean();
        r.map_err(|e| {
            self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
            MediaError::WebRtc(format!("datagram: {e}"))
        })
    }

    /// Next datagram to send, with its destination.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        if let Some(out) = self.outbox.pop_front() {
            return Some(out);
        }
        if !self.pc_dirty {
            return None;
        }
        let Some(m) = self.pc.poll_write() else {
            self.pc_dirty = false;
            return None;
        };
        let mut mismatch = false;
        if let Some(lean) = self.lean.as_mut().filter(|_| is_rtp(&m.message)) {
            lean.dest = Some(m.transport.peer_addr);
            if let Some(check) = lean.check.as_mut() {
                mismatch = check.decrypt_rtp(&m.message).is_err();
                lean.check = None;
            }
        }
        if mismatch {
            self.leave_lean("the connection's SRTP does not authenticate with the tapped key");
        }
        Some((m.transport.peer_addr, m.message))
    }

    /// Next RTP packet from the browser, as plain RTP bytes in `out`; returns its length.
    pub fn poll_rtp(&mut self, out: &mut [u8]) -> Option<usize> {
        while let Some(p) = self.inbox.pop_front() {
            if let Some(dst) = out.get_mut(..p.len()) {
                dst.copy_from_slice(&p);
                self.stats.0.from_browser.fetch_add(1, Ordering::Relaxed);
                return Some(p.len());
            }
            self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if !self.pc_reads {
            return None;
        }
        while let Some(m) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, pkt) = m.message {
                let id = (pkt.header.ssrc, pkt.header.sequence_number);
                if self
                    .lean
                    .as_ref()
                    .is_some_and(|l| !l.verified && l.refused == Some(id))
                {
                    self.leave_lean("the browser's SRTP authenticates with the connection's key, not the tapped one");
                }
                match pkt.marshal_to(out) {
                    Ok(n) => {
                        self.stats.0.from_browser.fetch_add(1, Ordering::Relaxed);
                        return Some(n);
                    }
                    Err(_) => {
                        self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.pc_reads = false;
        None
    }

    /// Sends a plain RTP packet (from the call) to the browser; its SSRC becomes our
    /// track's (the session keeps one SSRC per leg anyway; sequence and timestamp are
    /// already continuous).
    pub fn send_rtp(&mut self, data: &[u8], now: Instant) -> Result<()> {
        if self.state != WebRtcState::Connected {
            return Err(MediaError::WebRtc("not connected".into()));
        }
        if let Some(lean) = self.lean.as_mut() {
            let n = lean.sent;
            lean.sent = lean.sent.wrapping_add(1);
            let verified = lean.check.is_none();
            if let Some(dest) = lean.dest.filter(|_| verified && n % LEAN_SAMPLE != 0) {
                let pt = data.get(1).map(|b| b & 0x7f);
                let negotiated = self.media.is_some_and(|m| {
                    pt == Some(m.payload_type) || (pt.is_some() && pt == m.telephone_event)
                });
                if !negotiated || data.len() < 12 || data[0] >> 6 != 2 {
                    self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(MediaError::WebRtc("RTP from the call not sendable".into()));
                }
                lean.scratch.clear();
                lean.scratch.extend_from_slice(data);
                lean.scratch[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
                return match lean.local.encrypt_rtp(&lean.scratch) {
                    Ok(srtp) => {
                        self.outbox.push_back((dest, srtp));
                        self.stats.0.to_browser.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => {
                        self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
                        Err(MediaError::WebRtc(format!("send: {e}")))
                    }
                };
            }
        }
        self.pc_dirty = true;
        let mut buf = data;
        let mut pkt = rtc::rtp::Packet::unmarshal(&mut buf)
            .map_err(|_| MediaError::WebRtc("malformed RTP from the call".into()))?;
        pkt.header.ssrc = self.ssrc;
        let mut sender = self
            .pc
            .rtp_sender(self.sender)
            .ok_or_else(|| MediaError::WebRtc("sender gone".into()))?;
        match sender.write_rtp(now, pkt) {
            Ok(()) => {
                self.stats.0.to_browser.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.0.rejected.fetch_add(1, Ordering::Relaxed);
                Err(MediaError::WebRtc(format!("send: {e}")))
            }
        }
    }

    /// Sends the call's RTCP report for this leg (SR/RR + SDES, RFC 3550) to the
    /// browser through the peer connection (SRTCP): its sender SSRC becomes our
    /// track's, as [`WebRtcPeer::send_rtp`] does for RTP. Reports go out every few
    /// seconds, so the full path costs nothing that matters; the browser gets its
    /// round-trip time and loss figures from them.
    pub fn send_rtcp(&mut self, report: &[u8], now: Instant) -> Result<()> {
        if self.state != WebRtcState::Connected {
            return Err(MediaError::WebRtc("not connected".into()));
        }
        let mut pkt = report.to_vec();
        let mut at = 0;
        while let Some(head) = pkt.get(at..at + 8) {
            let len = 4 * (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1);
            if matches!(
                head[1],
                crate::rtcp::PT_SR | crate::rtcp::PT_RR | crate::rtcp::PT_SDES
            ) {
                pkt[at + 4..at + 8].copy_from_slice(&self.ssrc.to_be_bytes());
            }
            at += len;
        }
        let packets = rtc::rtcp::packet::unmarshal(&mut &pkt[..])
            .map_err(|_| MediaError::WebRtc("malformed RTCP from the call".into()))?;
        self.touch();
        let mut sender = self
            .pc
            .rtp_sender(self.sender)
            .ok_or_else(|| MediaError::WebRtc("sender gone".into()))?;
        sender
            .write_rtcp(now, packets)
            .map_err(|e| MediaError::WebRtc(format!("send rtcp: {e}")))
    }

    /// When [`WebRtcPeer::handle_timeout`] should run next.
    pub fn poll_timeout(&mut self) -> Instant {
        self.pc_stale = false;
        let mut t = self
            .pc
            .poll_timeout()
            .unwrap_or(now_plus_a_day(self.deadline));
        if self.state == WebRtcState::Connecting {
            t = t.min(self.deadline);
        }
        t
    }

    /// Runs the connection's timers (ICE checks, DTLS retransmissions, keep-alives).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch();
        self.pc_reads = true;
        let _ = self.pc.handle_timeout(now);
        if self.state == WebRtcState::Connecting && now >= self.deadline {
            self.set_state(WebRtcState::Failed);
        }
        self.update_state(now);
        self.go_lean();
    }

    /// Whether the peer connection was driven since [`WebRtcPeer::poll_timeout`] (a
    /// batch that went the lean way moved no timer).
    pub fn stale(&self) -> bool {
        self.pc_stale
    }

    /// Whether media takes the lean path (DTLS-SRTP up, keys tapped).
    pub fn is_lean(&self) -> bool {
        self.lean.is_some()
    }

    /// Builds the lean path once the connection is up and has derived a new pair of
    /// SRTP keys (the first handshake, or a new DTLS association).
    fn go_lean(&mut self) {
        if self.state != WebRtcState::Connected || !self.allow_lean {
            return;
        }
        let n = self.tap.count();
        if n < self.keys_used + 2 {
            return;
        }
        self.keys_used = n;
        self.lean = self.tap.contexts().map(|(local, remote, check)| Lean {
            local,
            remote,
            dest: None,
            verified: false,
            refused: None,
            check: Some(check),
            sent: 0,
            scratch: Vec::with_capacity(MAX_PACKET),
        });
        self.stats
            .0
            .lean
            .store(self.lean.is_some(), Ordering::Relaxed);
        tracing::debug!(lean = self.lean.is_some(), "webrtc media path");
    }

    /// Media goes back to the peer connection: the tapped keys are not the connection's
    /// (the `rtc` crate derives them in another order than [`KeyTap`] expects). Only a
    /// new DTLS association (new keys) builds the lean path again.
    fn leave_lean(&mut self, why: &'static str) {
        tracing::warn!(
            why,
            "webrtc lean media path left: media stays on the peer connection (rtc crate changed?)"
        );
        self.lean = None;
        self.stats.0.lean.store(false, Ordering::Relaxed);
    }

    fn set_state(&mut self, s: WebRtcState) {
        if self.state != s {
            tracing::debug!(from = ?self.state, to = ?s, "webrtc leg state");
            self.state = s;
            self.stats.set_state(s);
        }
    }

    fn update_state(&mut self, _now: Instant) {
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                match s {
                    RTCPeerConnectionState::Connected => self.set_state(WebRtcState::Connected),
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        self.set_state(WebRtcState::Failed)
                    }
                    _ => {}
                }
            }
        }
    }

    /// A handle on the counters and state.
    pub fn stats(&self) -> WebRtcStats {
        self.stats.clone()
    }

    /// Closes the connection (DTLS close_notify goes out with the next transmits).
    pub fn close(&mut self) {
        self.pc_dirty = true;
        self.lean = None;
        self.stats.0.lean.store(false, Ordering::Relaxed);
        let _ = self.pc.close();
        self.set_state(WebRtcState::Closed);
    }
}

/// What may arrive on a WebRTC port (RFC 7983 §7): STUN (first byte 0-3), DTLS (20-63)
/// or SRTP/SRTCP (128-191), each at least its fixed header long. Anything else is
/// refused before it reaches the peer connection.
fn demux_check(data: &[u8]) -> std::result::Result<(), &'static str> {
    if data.len() > MAX_PACKET {
        return Err("datagram too large");
    }
    let Some(&first) = data.first() else {
        return Err("empty datagram");
    };
    let min = match first {
        0..=3 => 20,
        20..=63 => 13,
        128..=191 => 12,
        _ => return Err("not STUN, DTLS or SRTP"),
    };
    if data.len() < min {
        return Err("datagram shorter than its header");
    }
    Ok(())
}

fn now_plus_a_day(t: Instant) -> Instant {
    t + Duration::from_secs(86_400)
}

/// A browser leg whose offer (or answer) is out: it holds the public socket until
/// [`WebRtcLeg::connect`] turns it into a [`MediaLeg`].
#[derive(Debug)]
pub struct WebRtcLeg {
    /// In a mutex only so the leg is `Sync` (the peer connection is not) and a call task
    /// may hold it across awaits; it is only ever reached through `&mut self`.
    peer: std::sync::Mutex<WebRtcPeer>,
    local: SocketAddr,
    stats: WebRtcStats,
    public: BoundPorts,
    media: Option<WebRtcMedia>,
}

impl WebRtcLeg {
    /// Binds the public socket (a pair from the range, on `settings.ip`) and makes the
    /// offer for the INVITE to the browser.
    pub async fn offer(ports: &PortAllocator, settings: &WebRtcSettings) -> Result<(Self, String)> {
        Self::offer_on(ports, settings, None).await
    }

    /// [`WebRtcLeg::offer`], on `shared` when given and bound on `settings.ip` (see
    /// [`WebRtcLeg::public_socket`]).
    pub async fn offer_on(
        ports: &PortAllocator,
        settings: &WebRtcSettings,
        shared: Option<&SharedPort>,
    ) -> Result<(Self, String)> {
        let mut public = Self::public_socket(ports, settings, shared).await?;
        let local = public.rtp.local_addr()?;
        let s = settings.clone();
        let (peer, sdp) = off_stack(move || WebRtcPeer::offer(&s, local, Instant::now())).await??;
        route_ice(&mut public, &sdp)?;
        Ok((WebRtcLeg::new(peer, public, None), sdp))
    }

    /// Answers a browser's offer; [`WebRtcLeg::connect`] with `None` then starts it.
    pub async fn answer(
        ports: &PortAllocator,
        settings: &WebRtcSettings,
        offer: &str,
    ) -> Result<(Self, String)> {
        Self::answer_on(ports, settings, offer, None).await
    }

    /// [`WebRtcLeg::answer`], on `shared` when given and bound on `settings.ip`.
    pub async fn answer_on(
        ports: &PortAllocator,
        settings: &WebRtcSettings,
        offer: &str,
        shared: Option<&SharedPort>,
    ) -> Result<(Self, String)> {
        let mut public = Self::public_socket(ports, settings, shared).await?;
        let local = public.rtp.local_addr()?;
        let (s, offer) = (settings.clone(), offer.to_owned());
        let (peer, sdp, media) =
            off_stack(move || WebRtcPeer::answer(&s, local, &offer, Instant::now())).await??;
        route_ice(&mut public, &sdp)?;
        Ok((WebRtcLeg::new(peer, public, Some(media)), sdp))
    }

    /// The leg's public socket: a pair of its own, or the shared port when there is one
    /// on the address browsers are given (ICE, DTLS and SRTP then come in there, sorted
    /// out to the leg by our ICE username fragment and the addresses it was seen from).
    async fn public_socket(
        ports: &PortAllocator,
        settings: &WebRtcSettings,
        shared: Option<&SharedPort>,
    ) -> Result<BoundPorts> {
        match shared {
            Some(sp) if sp.local_addr()?.ip() == settings.ip => {
                sp.reserve_leg(ports, settings.ip, None).await
            }
            _ => ports.bind(settings.ip).await,
        }
    }

    fn new(peer: WebRtcPeer, public: BoundPorts, media: Option<WebRtcMedia>) -> Self {
        WebRtcLeg {
            local: peer.local,
            stats: peer.stats(),
            peer: std::sync::Mutex::new(peer),
            public,
            media,
        }
    }

    /// The address browsers reach us on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle on the counters and state.
    pub fn stats(&self) -> WebRtcStats {
        self.stats.clone()
    }

    /// Applies the browser's answer (`None` when we answered its offer) and returns the
    /// call's leg towards it: the public socket's pair with the peer connection inside.
    /// The media session the leg joins drives the connection on that socket itself;
    /// dropping the leg closes it and frees the pair.
    pub async fn connect(self, answer: Option<&str>, timing: LegTiming) -> Result<MediaLeg> {
        let mut peer = self.peer.into_inner().unwrap_or_else(|e| e.into_inner());
        let media = match (answer, self.media) {
            (Some(a), _) => {
                let a = a.to_owned();
                let (p, m) = off_stack(move || {
                    let m = peer.accept_answer(&a, Instant::now());
                    (peer, m)
                })
                .await?;
                peer = p;
                m?
            }
            (None, Some(m)) => m,
            (None, None) => return Err(MediaError::SdpNotAcceptable("no answer from browser")),
        };
        let cfg = LegConfig {
            codec: media.codec,
            payload_type: media.payload_type,
            telephone_event: media.telephone_event,
            // What the peer connection hands over is already authenticated (SRTP); the
            // leg sees it coming from our own public address, so its latch never moves
            // (ICE picks where packets really go).
            remote_rtp: Some(self.local),
            remote_rtcp: None,
            direction: Direction::SendRecv,
            ptime: 20,
        };
        Ok(MediaLeg::browser(
            self.public,
            cfg,
            timing,
            Box::new(BrowserLink::new(peer)),
        ))
    }
}

/// Routes a shared public socket by the ICE username fragment of our `sdp`.
fn route_ice(public: &mut BoundPorts, sdp: &str) -> Result<()> {
    match ice_ufrag_of(sdp) {
        Some(u) => public.rtp.route_ice(u),
        None if public.rtp.is_shared() => Err(MediaError::WebRtc("no ICE ufrag in our SDP".into())),
        None => Ok(()),
    }
}

/// `a=ice-ufrag` of an SDP (session or first media level).
fn ice_ufrag_of(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

/// Runs `f` (building a peer connection, applying SDP) on a blocking-pool thread: the
/// `rtc` crate uses large stack frames there, and a call task's stack of nested futures
/// (debug builds) plus those frames overflowed a 2 MiB worker stack.
async fn off_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MediaError::WebRtc(format!("peer connection task: {e}")))
}

/// What the call can ask of a browser leg's peer connection while the media session
/// holds it.
#[derive(Debug)]
pub(crate) enum BrowserCommand {
    /// Answer the browser's re-offer.
    Reoffer {
        offer: String,
        reply: oneshot::Sender<Result<(Reanswer, LegConfig)>>,
    },
    /// Make our own offer on the running connection (for a 2xx to an offer-less
    /// re-INVITE).
    Offer {
        reply: oneshot::Sender<Result<String>>,
    },
    /// Apply the browser's answer to that offer (from the ACK).
    Answer {
        answer: String,
        reply: oneshot::Sender<Result<(WebRtcMedia, LegConfig)>>,
    },
}

/// A handle on a browser leg for in-dialog renegotiation (cheap to clone; the call keeps
/// one while the leg itself lives in the media session, which answers it).
#[derive(Debug, Clone)]
pub struct WebRtcControl(mpsc::Sender<BrowserCommand>);

fn link_gone() -> MediaError {
    MediaError::WebRtc("browser leg gone".into())
}

impl WebRtcControl {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> BrowserCommand,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.0.send(make(reply)).await.map_err(|_| link_gone())?;
        rx.await.map_err(|_| link_gone())?
    }

    /// Answers the browser's re-offer on the running connection. Returns the answer and
    /// the call leg's new configuration (codec, direction: the session stops sending to
    /// a browser that holds), to pass to the session's `reconfigure`.
    pub async fn reoffer(&self, offer: &str) -> Result<(Reanswer, LegConfig)> {
        let offer = offer.to_owned();
        self.ask(|reply| BrowserCommand::Reoffer { offer, reply })
            .await
    }

    /// Our offer on the running connection (same DTLS, same ICE credentials), sendrecv,
    /// for the 2xx to an offer-less re-INVITE; [`WebRtcControl::answer`] applies the
    /// answer the ACK brings.
    pub async fn offer(&self) -> Result<String> {
        self.ask(|reply| BrowserCommand::Offer { reply }).await
    }

    /// Applies the browser's answer to [`WebRtcControl::offer`]. Returns what it settled
    /// on and the call leg's new configuration (its direction says whether the browser
    /// holds), to pass to the session's `reconfigure`. An unusable answer changes
    /// nothing.
    pub async fn answer(&self, answer: &str) -> Result<(WebRtcMedia, LegConfig)> {
        let answer = answer.to_owned();
        self.ask(|reply| BrowserCommand::Answer { answer, reply })
            .await
    }
}

/// Grid on which a connected browser leg's timers run (see [`align_timer`]).
const TIMER_GRID: Duration = Duration::from_millis(20);

/// A connected peer connection's deadline, moved to the next point of a 20 ms grid shared
/// by every session of the process. The ICE agent asks to run every 200 ms for as long
/// as the call lasts (its keep-alive and consent checks are due every 2 s, its
/// disconnection checks after 5 s of silence), each leg at its own phase: 100 calls made
/// the media thread wake 500 times a second for timers alone. On the grid they fall due
/// together (at most 50 wake-ups a second for any number of calls), each at most 20 ms
/// late, which no ICE or DTLS timer of a connected leg notices. Not while connecting:
/// the handshake's timers run exactly.
fn align_timer(deadline: Instant) -> Instant {
    let just_before = deadline
        .checked_sub(Duration::from_nanos(1))
        .unwrap_or(deadline);
    crate::session::next_tick(just_before, TIMER_GRID)
}

/// A browser leg's peer connection, carried by its [`MediaLeg`] and driven inline by the
/// media session that holds the leg: datagrams read from the leg's (public) socket go
/// in, plain RTP comes out into the same relay path as a SIP phone's (and the reverse),
/// on the session's own task. No second task, no loopback hop.
#[derive(Debug)]
pub struct BrowserLink {
    peer: WebRtcPeer,
    commands: mpsc::Receiver<BrowserCommand>,
    control: WebRtcControl,
    /// The connection's next deadline, refreshed after each batch of input (reading it
    /// walks the `rtc` crate's handler chain, too dear per packet).
    deadline: Instant,
    reported: WebRtcState,
}

impl BrowserLink {
    fn new(mut peer: WebRtcPeer) -> Self {
        let (control, commands) = mpsc::channel(4);
        let deadline = peer.poll_timeout();
        let reported = peer.state();
        BrowserLink {
            peer,
            commands,
            control: WebRtcControl(control),
            deadline,
            reported,
        }
    }

    /// A handle for renegotiation (re-INVITEs from the browser).
    pub fn control(&self) -> WebRtcControl {
        self.control.clone()
    }

    /// Counters and state of the browser side.
    pub fn stats(&self) -> WebRtcStats {
        self.peer.stats()
    }

    /// Whether media bypasses the peer connection (see the module documentation).
    pub fn is_lean(&self) -> bool {
        self.peer.is_lean()
    }

    /// The address decrypted RTP is attributed to (the leg's own public address).
    pub(crate) fn source(&self) -> SocketAddr {
        self.peer.local
    }

    /// One datagram from the public socket (STUN, DTLS or SRTP); garbage is counted and
    /// dropped. Call [`BrowserLink::flush`] after a batch.
    pub(crate) fn receive(&mut self, src: SocketAddr, data: &[u8], now: Instant) {
        let _ = self.peer.handle_datagram(src, data, now);
    }

    /// Next decrypted RTP packet from the browser, in `out`.
    pub(crate) fn poll_rtp(&mut self, out: &mut [u8]) -> Option<usize> {
        self.peer.poll_rtp(out)
    }

    /// Encrypts a plain RTP packet built for this leg towards the browser (dropped until
    /// DTLS is up). Call [`BrowserLink::flush`] after a batch.
    pub(crate) fn send(&mut self, pkt: &[u8], now: Instant) {
        let _ = self.peer.send_rtp(pkt, now);
    }

    /// Sends the call's RTCP report to the browser (SRTCP, through the connection).
    pub(crate) fn send_rtcp(&mut self, report: &[u8], now: Instant, sock: &RtpSocket) {
        if self.peer.send_rtcp(report, now).is_ok() {
            self.transmit(sock);
        }
    }

    /// Sends what the connection queued (SRTP, STUN, DTLS) on `sock`: on a shared
    /// port, queued for its reader's `sendmmsg` with other calls' datagrams. Enough
    /// after sending media, which moves no timer the session must hear of.
    pub(crate) fn transmit(&mut self, sock: &RtpSocket) {
        match sock.shared_leg() {
            Some(shared) => shared.send(|push| {
                while let Some((dest, data)) = self.peer.poll_transmit() {
                    push(&data, dest);
                }
            }),
            None => {
                while let Some((dest, data)) = self.peer.poll_transmit() {
                    let _ = sock.send_to(&data, dest);
                }
            }
        }
    }

    /// [`BrowserLink::transmit`], then notes the connection's next deadline and state
    /// (after input, timers or renegotiation).
    pub(crate) fn flush(&mut self, sock: &RtpSocket) {
        self.transmit(sock);
        if !self.peer.stale() {
            return;
        }
        self.deadline = self.peer.poll_timeout();
        let state = self.peer.state();
        if state == WebRtcState::Connected {
            self.deadline = align_timer(self.deadline);
        }
        if state != self.reported {
            self.reported = state;
            match state {
                WebRtcState::Connected => tracing::info!("webrtc leg connected"),
                WebRtcState::Failed => tracing::warn!("webrtc leg failed"),
                _ => {}
            }
        }
    }

    /// When [`BrowserLink::handle_timeout`] should run next.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Runs the connection's timers if due (ICE checks, DTLS retransmissions,
    /// keep-alives) and sends what they queued.
    pub(crate) fn handle_timeout(&mut self, now: Instant, sock: &RtpSocket) {
        if now >= self.deadline {
            self.peer.handle_timeout(now);
            self.flush(sock);
            if self.deadline <= now {
                // The same deadline again: look again shortly rather than spin.
                self.deadline = now + Duration::from_millis(1);
            }
        }
    }

    /// Polls for a renegotiation request (registers the session's waker).
    pub(crate) fn poll_command(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<BrowserCommand>> {
        self.commands.poll_recv(cx)
    }

    /// Carries out a renegotiation request on the running connection; `cfg` is the leg's
    /// current configuration (the reply's new one derives from it).
    pub(crate) fn command(
        &mut self,
        cmd: BrowserCommand,
        cfg: &LegConfig,
        now: Instant,
        sock: &RtpSocket,
    ) {
        let with = |media: WebRtcMedia, direction: Direction| LegConfig {
            codec: media.codec,
            payload_type: media.payload_type,
            telephone_event: media.telephone_event,
            direction,
            ..*cfg
        };
        match cmd {
            BrowserCommand::Reoffer { offer, reply } => {
                let r = self.peer.reoffer(&offer, now).map(|re| {
                    let cfg = with(re.media, re.direction);
                    (re, cfg)
                });
                let _ = reply.send(r);
            }
            BrowserCommand::Offer { reply } => {
                let _ = reply.send(self.peer.offer_again(now));
            }
            BrowserCommand::Answer { answer, reply } => {
                let r = self
                    .peer
                    .accept_reanswer(&answer, now)
                    .map(|(media, ours)| (media, with(media, ours)));
                let _ = reply.send(r);
            }
        }
        self.flush(sock);
    }

    /// Our current ICE username fragment (a new one after an ICE restart).
    pub(crate) fn ice_ufrag(&self) -> Option<String> {
        let sdp = self.peer.local_sdp().ok()?;
        ice_ufrag_of(&sdp).map(str::to_owned)
    }

    /// Closes the connection: DTLS close_notify goes out on `sock`.
    pub(crate) fn close(&mut self, sock: &RtpSocket) {
        self.peer.close();
        self.transmit(sock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_accepts_only_stun_dtls_and_srtp_shapes() {
        assert!(demux_check(&[0u8; 20]).is_ok(), "STUN header");
        assert!(demux_check(&[22u8; 13]).is_ok(), "DTLS record header");
        assert!(demux_check(&[0x80u8; 12]).is_ok(), "RTP header");
        assert!(demux_check(&[]).is_err());
        assert!(demux_check(&[0u8; 19]).is_err(), "short STUN");
        assert!(demux_check(&[22u8; 12]).is_err(), "short DTLS");
        assert!(demux_check(&[0x80u8; 11]).is_err(), "short RTP");
        assert!(demux_check(&[4u8; 100]).is_err(), "first byte 4..19");
        assert!(
            demux_check(&[64u8; 100]).is_err(),
            "first byte 64..127 (TURN channel)"
        );
        assert!(demux_check(&[0xC0u8; 100]).is_err(), "first byte ≥ 192");
        assert!(demux_check(&[0x80u8; MAX_PACKET + 1]).is_err(), "too large");
    }

    /// A connected leg's timers fall on the shared 20 ms grid: never early, at most one
    /// grid step late, and deadlines of different legs within a step coincide.
    #[test]
    fn connected_timers_are_aligned_to_a_shared_grid() {
        let t0 = Instant::now();
        let a = align_timer(t0 + Duration::from_micros(200_321));
        assert!(a >= t0 + Duration::from_micros(200_321));
        assert!(a < t0 + Duration::from_micros(200_321) + TIMER_GRID);
        assert_eq!(align_timer(a), a, "on the grid already");
        for us in [1u64, 3_000, 7_777, 19_999] {
            let b = align_timer(a - TIMER_GRID + Duration::from_micros(us));
            assert_eq!(b, a, "{us} µs into the step before");
        }
    }

    #[test]
    fn offer_direction_is_the_audio_sections() {
        let m = "v=0\r\ns=-\r\nt=0 0\r\n";
        assert_eq!(offer_direction(m), Direction::SendRecv, "absent");
        let audio = format!("{m}m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=sendonly\r\n");
        assert_eq!(offer_direction(&audio), Direction::SendOnly);
        let session = format!("{m}a=inactive\r\nm=audio 9 RTP/AVP 0\r\n");
        assert_eq!(
            offer_direction(&session),
            Direction::Inactive,
            "session level"
        );
        let video_first =
            format!("{m}m=video 9 RTP/AVP 96\r\na=recvonly\r\nm=audio 9 RTP/AVP 0\r\n");
        assert_eq!(offer_direction(&video_first), Direction::SendRecv);
        let both = format!("{m}a=inactive\r\nm=audio 9 RTP/AVP 0\r\na=sendrecv\r\n");
        assert_eq!(
            offer_direction(&both),
            Direction::SendRecv,
            "media level wins"
        );
    }

    /// Garbage of every shape from a stranger before any answer: refused or ignored,
    /// never a panic, and the peer stays connecting with its offer intact.
    #[test]
    fn garbage_before_the_answer_changes_nothing() {
        let now = Instant::now();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let s = WebRtcSettings::new(local.ip());
        let (mut p, offer) = WebRtcPeer::offer(&s, local, now).unwrap();
        let src: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in [1usize, 12, 13, 20, 21, 64, 200, 1200] {
            for first in [0u8, 1, 3, 20, 22, 63, 128, 150, 191] {
                let mut d = vec![0u8; len];
                for b in d.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *b = seed as u8;
                }
                d[0] = first;
                let _ = p.handle_datagram(src, &d, now);
            }
        }
        p.handle_timeout(now + Duration::from_millis(50));
        assert_eq!(p.state(), WebRtcState::Connecting);
        assert!(p.stats().rejected() > 0);
        assert!(
            p.send_rtp(&[0x80; 172], now).is_err(),
            "nothing sent before DTLS"
        );
        assert_eq!(p.local_sdp().unwrap(), offer);
    }

    /// Moves every queued datagram of `from` to `to`; returns how many moved.
    fn pump(from: &mut WebRtcPeer, to: &mut WebRtcPeer, now: Instant) -> usize {
        let mut n = 0;
        while let Some((dest, d)) = from.poll_transmit() {
            assert_eq!(dest, to.local, "sent where the other peer is");
            let _ = to.handle_datagram(from.local, &d, now);
            n += 1;
        }
        n
    }

    /// Two of our peers (offer and answer) connected in memory, with a virtual clock:
    /// the peers and the clock once both are connected and nothing is left in flight.
    fn connected_pair() -> (WebRtcPeer, WebRtcPeer, Instant) {
        connected_pair_with(true)
    }

    /// [`connected_pair`] with [`WebRtcSettings::lean`] as given.
    fn connected_pair_with(lean: bool) -> (WebRtcPeer, WebRtcPeer, Instant) {
        let t0 = Instant::now();
        let a_addr: SocketAddr = "127.0.0.1:40010".parse().unwrap();
        let b_addr: SocketAddr = "127.0.0.1:40012".parse().unwrap();
        let s = WebRtcSettings {
            lean,
            ..WebRtcSettings::new(a_addr.ip())
        };
        let (mut a, offer) = WebRtcPeer::offer(&s, a_addr, t0).unwrap();
        let (mut b, answer, _) = WebRtcPeer::answer(&s, b_addr, &offer, t0).unwrap();
        a.accept_answer(&answer, t0).unwrap();
        let mut now = t0;
        for _ in 0..2000 {
            if a.state() == WebRtcState::Connected && b.state() == WebRtcState::Connected {
                break;
            }
            let moved = pump(&mut a, &mut b, now) + pump(&mut b, &mut a, now);
            if moved == 0 {
                now += Duration::from_millis(5);
                for p in [&mut a, &mut b] {
                    if now >= p.poll_timeout() {
                        p.handle_timeout(now);
                    }
                }
            }
        }
        assert_eq!(a.state(), WebRtcState::Connected);
        assert_eq!(b.state(), WebRtcState::Connected);
        pump(&mut a, &mut b, now);
        pump(&mut b, &mut a, now);
        (a, b, now)
    }

    /// Sends RTP packets `from` → `to` with the sequence numbers `seqs`, one at a time;
    /// asserts each one arrives whole (sequence number, payload).
    fn each_arrives(
        from: &mut WebRtcPeer,
        to: &mut WebRtcPeer,
        seqs: std::ops::RangeInclusive<u16>,
        now: Instant,
    ) {
        let mut out = [0u8; MAX_PACKET];
        for seq in seqs {
            from.send_rtp(&rtp(seq, 0), now).unwrap();
            let (dest, d) = from.poll_transmit().expect("SRTP out");
            assert_eq!(dest, to.local);
            let _ = to.handle_datagram(from.local, &d, now);
            let n = to.poll_rtp(&mut out).expect("decrypted");
            assert_eq!(out[2..4], seq.to_be_bytes(), "seq {seq}");
            assert_eq!(&out[12..n], &rtp(seq, 0)[12..], "seq {seq}");
        }
    }

    /// Rebuilds `p`'s lean path from its last two tapped keys swapped, as if the `rtc`
    /// crate derived the remote context's keys before the local one's.
    fn miskey(p: &mut WebRtcPeer) {
        {
            let mut keys = p.tap.keys();
            let n = keys.len();
            keys.swap(n - 2, n - 1);
        }
        p.keys_used -= 2;
        p.go_lean();
        assert!(
            p.is_lean() && p.stats().lean(),
            "lean path on the wrong keys"
        );
    }

    /// Tapped keys that are not the connection's are found out by the first packet,
    /// whichever way it goes, and media stays on the peer connection: nothing is lost.
    fn wrong_tapped_keys_fall_back_to_the_peer_connection() {
        // Receiving first: b's lean context refuses a's first packet, which b's peer
        // connection accepts.
        let (mut a, mut b, now) = connected_pair();
        miskey(&mut b);
        each_arrives(&mut a, &mut b, 1..=1, now);
        assert!(!b.is_lean() && !b.stats().lean(), "left after one packet");
        each_arrives(&mut a, &mut b, 2..=20, now);
        each_arrives(&mut b, &mut a, 2..=20, now);

        // Sending first: b's first packet goes through its peer connection, and its
        // SRTP does not authenticate with the tapped sending key.
        let (mut a, mut b, now) = connected_pair();
        miskey(&mut b);
        each_arrives(&mut b, &mut a, 1..=1, now);
        assert!(!b.is_lean() && !b.stats().lean(), "left after one packet");
        each_arrives(&mut b, &mut a, 2..=20, now);
        each_arrives(&mut a, &mut b, 1..=20, now);
        assert!(a.is_lean(), "a's keys were right");
        assert_eq!(b.stats().from_browser(), 20);
        assert_eq!(a.stats().from_browser(), 20);
    }

    /// With `lean = false` media stays on the peer connections, both ways.
    fn lean_off_keeps_media_on_the_peer_connection() {
        let (mut a, mut b, now) = connected_pair_with(false);
        assert!(!a.is_lean() && !b.is_lean());
        each_arrives(&mut a, &mut b, 1..=20, now);
        each_arrives(&mut b, &mut a, 1..=20, now);
        assert!(!a.is_lean() && !b.is_lean() && !a.stats().lean());
    }

    fn rtp(seq: u16, pt: u8) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
        p
    }

    /// Two of our peers (offer and answer) connect in memory, with a virtual clock;
    /// once DTLS-SRTP is up both take the lean path, RTP flows both ways through it
    /// (after the first packet, which goes through the peer connection and shows where
    /// to send), and a tampered or replayed SRTP packet is refused and counted.
    fn lean_path_carries_rtp_and_refuses_tampering_and_replays() {
        let (mut a, mut b, mut now) = connected_pair();
        let (a_addr, b_addr) = (a.local, b.local);
        assert!(a.is_lean() && b.is_lean(), "keys tapped on both sides");
        assert!(a.stats().lean());

        // b → a: the first goes through b's peer connection, the rest the lean way;
        // every one decrypted by a's lean context.
        let mut out = [0u8; MAX_PACKET];
        let mut last = Vec::new();
        for seq in 1..=20u16 {
            b.send_rtp(&rtp(seq, 0), now).unwrap();
            let (dest, d) = b.poll_transmit().expect("SRTP out");
            assert_eq!(dest, a_addr);
            assert!(b.poll_transmit().is_none());
            a.handle_datagram(b_addr, &d, now).unwrap();
            let n = a.poll_rtp(&mut out).expect("decrypted");
            let mut want = rtp(seq, 0);
            want[8..12].copy_from_slice(&b.ssrc.to_be_bytes());
            assert_eq!(&out[..n], &want[..], "seq {seq}");
            last = d.to_vec();
        }
        assert!(b.lean.as_ref().unwrap().dest == Some(a_addr));
        assert!(
            a.lean.as_ref().unwrap().verified,
            "a's own context decrypted"
        );
        assert_eq!(a.stats().from_browser(), 20);

        let rejected = a.stats().rejected();
        a.handle_datagram(b_addr, &last, now).unwrap_err();
        assert!(a.poll_rtp(&mut out).is_none(), "a replay is dropped");
        let mut forged = last.clone();
        forged[2..4].copy_from_slice(&21u16.to_be_bytes());
        *forged.last_mut().unwrap() ^= 1;
        a.handle_datagram(b_addr, &forged, now).unwrap_err();
        let mut forged = last.clone();
        forged[2..4].copy_from_slice(&22u16.to_be_bytes());
        forged[20] ^= 0x40;
        a.handle_datagram(b_addr, &forged, now).unwrap_err();
        assert!(a.poll_rtp(&mut out).is_none(), "forged packets are dropped");
        assert_eq!(a.stats().rejected(), rejected + 3);
        assert_eq!(a.stats().from_browser(), 20);

        // a → b, including telephone-event; a payload type not negotiated is refused.
        for seq in 1..=20u16 {
            let pt = if seq == 10 { 101 } else { 0 };
            a.send_rtp(&rtp(seq, pt), now).unwrap();
            let (_, d) = a.poll_transmit().expect("SRTP out");
            b.handle_datagram(a_addr, &d, now).unwrap();
            let n = b.poll_rtp(&mut out).expect("decrypted");
            assert_eq!(out[1] & 0x7f, pt);
            assert_eq!(&out[12..n], &rtp(seq, pt)[12..]);
        }
        assert!(
            a.send_rtp(&rtp(21, 96), now).is_err(),
            "PT 96 not negotiated"
        );
        assert!(b.lean.as_ref().unwrap().verified);
        assert_eq!(a.stats().to_browser(), 20);

        // The call's RTCP report reaches the other side as SRTCP, under our track's SSRC.
        let mut report = [0u8; 200];
        let block = crate::rtcp::ReportBlock {
            ssrc: b.ssrc,
            highest_seq: 20,
            ..Default::default()
        };
        let sender = crate::rtcp::SenderInfo {
            ntp: 1 << 32,
            rtp_timestamp: 3200,
            packets: 20,
            octets: 3200,
        };
        let n = crate::rtcp::build_report(&mut report, 0xDEAD_BEEF, Some(sender), Some(block), "h")
            .unwrap();
        a.send_rtcp(&report[..n], now).unwrap();
        let (dest, d) = a.poll_transmit().expect("one SRTCP datagram");
        assert_eq!(dest, b_addr);
        assert!(!is_rtp(&d), "RTCP on the muxed port");
        // Decrypted with a context keyed from a's sending master key (as the browser's).
        let k = a.tap.keys()[a.keys_used - 2].clone();
        let profile = if k.key.len() == 16 {
            ProtectionProfile::AeadAes128Gcm
        } else {
            ProtectionProfile::AeadAes256Gcm
        };
        let mut ctx = SrtpContext::new(
            &k.key,
            &k.block[..profile.salt_len()],
            profile,
            None,
            None,
            a.tap.inner.crypto(),
        )
        .unwrap();
        let plain = ctx.decrypt_rtcp(&d).expect("SRTCP authenticates");
        let rtcp = rtc::rtcp::packet::unmarshal(&mut &plain[..]).unwrap();
        let sr = rtcp
            .iter()
            .find_map(|p| {
                p.as_any()
                    .downcast_ref::<rtc::rtcp::sender_report::SenderReport>()
            })
            .expect("sender report received");
        assert_eq!(sr.ssrc, a.ssrc, "the track's SSRC, not the call's");
        assert_eq!(sr.packet_count, 20);
        assert_eq!(sr.reports.first().map(|r| r.ssrc), Some(b.ssrc));

        // Timers and STUN/DTLS still run on the peer connections.
        now += Duration::from_secs(3);
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(&mut a, &mut b, now);
        pump(&mut b, &mut a, now);
        assert_eq!(a.state(), WebRtcState::Connected);
    }

    /// Runs `f` on a thread with a large stack: the `rtc` crate's frames are large in
    /// debug builds (see `off_stack`).
    fn big_stack(f: fn()) {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn lean_path() {
        big_stack(lean_path_carries_rtp_and_refuses_tampering_and_replays);
    }

    #[test]
    fn lean_path_off() {
        big_stack(lean_off_keeps_media_on_the_peer_connection);
    }

    #[test]
    fn lean_path_wrong_keys() {
        big_stack(wrong_tapped_keys_fall_back_to_the_peer_connection);
    }
}
