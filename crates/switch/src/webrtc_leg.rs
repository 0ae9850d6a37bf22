//! Browser agents: when an agent's registered contact is a SIP-over-WebSocket one
//! (RFC 7118; JsSIP and SIP.js register `;transport=ws` or `wss`), the agent leg's SDP is
//! the WebRTC gateway's offer (ICE, DTLS-SRTP, rtcp-mux, G.711 + telephone-event) and the
//! 200 OK's answer starts the gateway. The call then sees a plain leg, so music, hold,
//! recording, DTMF and transfer behave as for a SIP phone.
//!
//! A browser calling in (its INVITE carries a DTLS-SRTP offer) is answered by the
//! gateway the same way ([`answer`]), so click-to-dial and agent-to-agent calls work.
//!
//! Judged from the contact URI rather than the flow so this does not depend on how the
//! SIP layer exposes its WebSocket transport.

use hotline_media::leg::LegTiming;
use hotline_media::ports::BoundPorts;
use hotline_media::sdp::{Direction, LocalMedia, SessionDescription, build_offer};
use hotline_media::session::MediaLeg;
use hotline_media::{MediaError, PortAllocator, WebRtcLeg};

use crate::SwitchConfig;

/// Whether a contact URI (as registered) belongs to a browser: its `transport`
/// parameter is `ws` or `wss`.
pub(crate) fn is_browser_contact(uri: &str) -> bool {
    let uri = uri.trim().trim_start_matches('<');
    let uri = uri.split('>').next().unwrap_or(uri);
    // URI parameters follow the host part; header parameters (`?`) are not ours.
    let params = uri.split('?').next().unwrap_or(uri);
    params.split(';').skip(1).any(|p| {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        name.trim().eq_ignore_ascii_case("transport")
            && (value.trim().eq_ignore_ascii_case("ws") || value.trim().eq_ignore_ascii_case("wss"))
    })
}

/// The gateway's offer for the INVITE to a browser agent: no plain port pair (the
/// gateway holds its own), the leg itself, a plain description of our public port (what
/// the in-call code keeps as "our offer") and the SDP to send. The leg and the future
/// making it stay on the heap (about 9 KB in a debug build): inline, they sized every
/// future that rings anyone (routing, transfers, ACD offers).
pub(crate) async fn offer(
    ports: &PortAllocator,
    cfg: &SwitchConfig,
) -> Option<(
    Option<BoundPorts>,
    Option<Box<WebRtcLeg>>,
    SessionDescription,
    String,
)> {
    match Box::pin(WebRtcLeg::offer_on(
        ports,
        &cfg.webrtc,
        cfg.shared_rtp.as_deref(),
    ))
    .await
    {
        Ok((leg, sdp)) => {
            let local = LocalMedia::new(cfg.media_ip, leg.local_addr().port());
            let plain = build_offer(&local, Direction::SendRecv);
            Some((None, Some(Box::new(leg)), plain, sdp))
        }
        Err(e) => {
            tracing::warn!(error = %e, "no WebRTC offer for the browser agent");
            None
        }
    }
}

/// The browser's 2xx: its SDP answer completes the leg, which joins the call like a SIP
/// phone's (the media session drives its connection); `None` when the answer is
/// unusable. The leg and its connecting future (about 35 KB in a debug build) stay on
/// the heap: inline, they made every future that awaits an agent's answer that large.
pub(crate) async fn answered(
    leg: Box<WebRtcLeg>,
    body: &[u8],
    timing: LegTiming,
) -> Option<MediaLeg> {
    let r = match std::str::from_utf8(body) {
        Ok(sdp) => Box::pin((*leg).connect(Some(sdp), timing)).await,
        Err(_) => Err(MediaError::SdpMalformed {
            line: 0,
            reason: "SDP is not UTF-8",
        }),
    };
    r.inspect_err(|e| tracing::warn!(error = %e, "browser agent's answer refused"))
        .ok()
}

/// Whether an INVITE's offer comes from a browser: an audio section over DTLS-SRTP
/// (`UDP/TLS/RTP/SAVPF`, JSEP), which a plain SDP answer cannot serve.
pub(crate) fn is_webrtc_offer(body: &[u8]) -> bool {
    let Ok(sdp) = std::str::from_utf8(body) else {
        return false;
    };
    sdp.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next().is_some_and(|m| m.starts_with("m=audio"))
            && f.nth(1).is_some_and(|p| p.contains("/TLS/"))
    })
}

/// A browser calling in (click-to-dial, agent to agent): the gateway answers its offer
/// and starts at once. Returns the call's plain leg, a plain description of our public
/// port (what the in-call code keeps as "our SDP") and the answer SDP for the 2xx.
pub(crate) async fn answer(
    ports: &PortAllocator,
    cfg: &SwitchConfig,
    body: &[u8],
    timing: LegTiming,
) -> Result<(MediaLeg, SessionDescription, String), MediaError> {
    let offer = std::str::from_utf8(body).map_err(|_| MediaError::SdpMalformed {
        line: 0,
        reason: "SDP is not UTF-8",
    })?;
    let (leg, sdp) =
        WebRtcLeg::answer_on(ports, &cfg.webrtc, offer, cfg.shared_rtp.as_deref()).await?;
    let local = LocalMedia::new(cfg.media_ip, leg.local_addr().port());
    let plain = build_offer(&local, Direction::SendRecv);
    let leg = leg.connect(None, timing).await?;
    Ok((leg, plain, sdp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtls_srtp_offers_are_browsers() {
        let webrtc = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\na=fingerprint:sha-256 AA\r\n";
        assert!(is_webrtc_offer(webrtc.as_bytes()));
        let plain = "v=0\r\nm=audio 4000 RTP/AVP 0 8\r\n";
        assert!(!is_webrtc_offer(plain.as_bytes()));
        let video_only = "v=0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        assert!(!is_webrtc_offer(video_only.as_bytes()));
        assert!(!is_webrtc_offer(b""));
        assert!(!is_webrtc_offer(&[0xff, 0xfe, b'm', b'=']));
        assert!(!is_webrtc_offer(b"m=audio"));
    }

    #[test]
    fn websocket_contacts_are_browsers() {
        for uri in [
            "sip:agent@df7jal23ls0d.invalid;transport=ws",
            "<sip:agent@192.0.2.4:51234;transport=WSS>",
            "sip:a@h;ob;transport=ws",
            "sip:a@h;transport = ws ;lr",
        ] {
            assert!(is_browser_contact(uri), "{uri}");
        }
        for uri in [
            "sip:agent@192.0.2.4:5060",
            "sip:agent@192.0.2.4;transport=tcp",
            "sip:agent@192.0.2.4;transport=wsx",
            "sip:ws@host",
            "sip:a@h?transport=ws",
            "sip:a@h;x-transport=ws",
            "",
        ] {
            assert!(!is_browser_contact(uri), "{uri}");
        }
    }
}
