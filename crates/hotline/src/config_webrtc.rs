//! `[media] webrtc_public_ip`: how browser agents' WebRTC legs are offered. Agents on
//! the LAN reach the host candidate on `rtp_ip`; behind a 1:1 NAT or a cloud provider's
//! public address, `webrtc_public_ip` is offered as well (same port), so browsers
//! outside can connect. Agents behind strict NATs need a TURN server: see the README.
//! `webrtc_ice_lite = true` makes the gateway an ICE-lite server (RFC 8445 §2.5): it
//! only answers the browser's checks, and both addresses are offered as host candidates.

use hotline_media::WebRtcSettings;

use crate::config::MediaConfig;

/// The gateway's settings from `[media]`.
pub fn webrtc_settings(media: &MediaConfig) -> WebRtcSettings {
    let mut s = WebRtcSettings::new(media.rtp_ip);
    s.public_ip = media.webrtc_public_ip.as_ref().map(|p| *p.get_ref());
    s.ice_lite = media.webrtc_ice_lite;
    s
}

/// Checks the WebRTC keys; on error, the byte offset of the bad value and the message.
pub fn validate(media: &MediaConfig) -> Result<(), (usize, String)> {
    if let Some(p) = &media.webrtc_public_ip {
        let ip = *p.get_ref();
        let bad = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
        if bad {
            return Err((
                p.span().start,
                format!("webrtc_public_ip {ip} is not an address browsers can send to"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    const HEAD: &str = "[sip]\nudp = [\"127.0.0.1:5060\"]\n[media]\nrtp_ip = \"10.0.0.5\"\n";

    #[test]
    fn public_ip_is_offered_when_set() {
        let cfg = parse(&format!("{HEAD}webrtc_public_ip = \"203.0.113.7\"\n")).unwrap();
        let s = super::webrtc_settings(&cfg.media);
        assert_eq!(s.ip, "10.0.0.5".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(s.public_ip, Some("203.0.113.7".parse().unwrap()));
        let cfg = parse(HEAD).unwrap();
        assert_eq!(super::webrtc_settings(&cfg.media).public_ip, None);
    }

    #[test]
    fn ice_lite_is_off_unless_set() {
        let cfg = parse(HEAD).unwrap();
        assert!(!super::webrtc_settings(&cfg.media).ice_lite);
        let cfg = parse(&format!("{HEAD}webrtc_ice_lite = true\n")).unwrap();
        assert!(super::webrtc_settings(&cfg.media).ice_lite);
        let e = parse(&format!("{HEAD}webrtc_ice_lite = \"yes\"\n")).unwrap_err();
        assert!(e.to_string().contains(":5:"), "line 5 named: {e}");
    }

    #[test]
    fn unusable_public_ips_are_refused_with_their_position() {
        for bad in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::"] {
            let e = parse(&format!("{HEAD}webrtc_public_ip = \"{bad}\"\n")).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("webrtc_public_ip"), "{text}");
            assert!(text.contains(":5:"), "line 5 named: {text}");
        }
        let e = parse(&format!("{HEAD}webrtc_public_ip = \"not-an-ip\"\n")).unwrap_err();
        assert!(e.to_string().contains(":5:"), "{e}");
    }
}
