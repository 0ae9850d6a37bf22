//! `[sip]` transport keys beyond UDP/TCP: `tls_listen`, `ws_listen`, `wss_listen`,
//! `max_connections_per_source`, `[sip.tls]` (certificate and key, reloaded on change)
//! and `[sip.ws]` (Origin allow-list).

use std::path::PathBuf;
use std::time::Duration;

use hotline_sip::server::ServerConfig;
use hotline_sip::tls::TlsConfig;
use hotline_sip::ws::WsConfig;
use serde::Deserialize;
use toml::Spanned;

use super::{Config, ConfigError, SipConfig, locate};

/// `[sip.tls]`: the certificate of the TLS and WSS listeners.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsToml {
    /// PEM certificate chain, leaf first (relative paths: to the working directory).
    pub cert: Spanned<PathBuf>,
    /// PEM private key of the leaf.
    pub key: Spanned<PathBuf>,
    /// Seconds between checks of the files for a new certificate (0 = never reload).
    /// New connections get the new certificate; open ones keep theirs.
    #[serde(default = "default_reload_secs")]
    pub reload_secs: u64,
    /// PEM CA certificates trusted when Hotline dials a TLS peer itself (a
    /// `static_route` with `;transport=tls`); peers are checked by IP address.
    pub ca: Option<Spanned<PathBuf>>,
}

fn default_reload_secs() -> u64 {
    5
}

/// `[sip.ws]`: WebSocket upgrade checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsToml {
    /// Allowed `Origin`s of browser pages (`"https://desk.example.com"`); empty: any.
    #[serde(default)]
    pub origins: Vec<Spanned<String>>,
}

pub(super) fn default_per_source() -> usize {
    ServerConfig::default().max_per_source
}

impl SipConfig {
    /// Whether any listen address is configured, of any transport.
    pub fn has_listener(&self) -> bool {
        [
            &self.udp,
            &self.tcp,
            &self.tls_listen,
            &self.ws_listen,
            &self.wss_listen,
        ]
        .iter()
        .any(|l| !l.is_empty())
    }

    /// The transport part of the server configuration (listen addresses, certificate,
    /// WebSocket checks, per-source cap); the rest is left at its defaults.
    pub fn transports(&self) -> ServerConfig {
        ServerConfig {
            tls: self.tls_listen.clone(),
            ws: self.ws_listen.clone(),
            wss: self.wss_listen.clone(),
            tls_config: self.tls.as_ref().map(|t| TlsConfig {
                cert: t.cert.get_ref().clone(),
                key: t.key.get_ref().clone(),
                reload_every: Duration::from_secs(t.reload_secs),
            }),
            ws_config: WsConfig {
                origins: self
                    .ws
                    .origins
                    .iter()
                    .map(|o| o.get_ref().clone())
                    .collect(),
            },
            max_per_source: self.max_connections_per_source,
            tls_dial_roots: self
                .tls
                .as_ref()
                .and_then(|t| t.ca.as_ref())
                .map(|c| c.get_ref().clone()),
            ..ServerConfig::default()
        }
    }
}

impl Config {
    /// TLS listeners need `[sip.tls]` whose files load; Origins look like origins.
    pub(super) fn validate_transports(
        &self,
        path: &std::path::Path,
        text: &str,
    ) -> Result<(), ConfigError> {
        let sip_at = super::span_at(text, &["sip"]);
        let s = &self.sip;
        let secure = !s.tls_listen.is_empty() || !s.wss_listen.is_empty();
        match &s.tls {
            None if secure => {
                return Err(locate(
                    path,
                    text,
                    sip_at,
                    "tls_listen and wss_listen need [sip.tls] with cert and key".into(),
                ));
            }
            Some(t) => {
                for f in [&t.cert, &t.key] {
                    if let Err(e) = std::fs::metadata(f.get_ref()) {
                        return Err(locate(
                            path,
                            text,
                            f.span().start,
                            format!("cannot read {}: {e}", f.get_ref().display()),
                        ));
                    }
                }
                if let Err(e) =
                    hotline_sip::tls::load_certified_key(t.cert.get_ref(), t.key.get_ref())
                {
                    return Err(locate(path, text, t.cert.span().start, e.to_string()));
                }
                if let Some(ca) = &t.ca
                    && let Err(e) = hotline_sip::tls::client_connector(ca.get_ref())
                {
                    return Err(locate(path, text, ca.span().start, e.to_string()));
                }
            }
            None => {}
        }
        let tls_route = s
            .static_route
            .is_some_and(|r| r.0.transport == hotline_sip::Transport::Tls);
        let can_dial = s.tls.as_ref().is_some_and(|t| t.ca.is_some()) && !s.tls_listen.is_empty();
        if tls_route && !can_dial {
            return Err(locate(
                path,
                text,
                sip_at,
                "a static_route with transport=tls needs tls_listen and [sip.tls] ca (the roots its certificate is checked against)".into(),
            ));
        }
        for o in &s.ws.origins {
            let v = o.get_ref();
            let ok = v.split_once("://").is_some_and(|(scheme, host)| {
                !scheme.is_empty() && !host.is_empty() && !host.contains('/')
            });
            if !ok {
                return Err(locate(
                    path,
                    text,
                    o.span().start,
                    format!("invalid origin {v:?} (expected e.g. \"https://desk.example.com\")"),
                ));
            }
        }
        if s.max_connections_per_source == 0 {
            return Err(locate(
                path,
                text,
                sip_at,
                "max_connections_per_source must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), text)
    }

    fn cert_pair(name: &str) -> (PathBuf, PathBuf) {
        let d = std::env::temp_dir().join(format!("hotline-cfg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["hotline.test".into()]).unwrap();
        let (c, k) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn tls_and_ws_listeners_parse() {
        let (c, k) = cert_pair("ok");
        let cfg = parse(&format!(
            "[sip]\ntls_listen = [\"127.0.0.1:5061\"]\nws_listen = [\"127.0.0.1:8088\"]\nwss_listen = [\"127.0.0.1:8089\"]\nmax_connections_per_source = 7\n[sip.tls]\ncert = {c:?}\nkey = {k:?}\nreload_secs = 2\n[sip.ws]\norigins = [\"https://desk.example\"]\n"
        ))
        .unwrap();
        let t = cfg.sip.transports();
        assert_eq!(t.tls.len(), 1);
        assert_eq!(t.ws[0].port(), 8088);
        assert_eq!(t.wss[0].port(), 8089);
        assert_eq!(t.max_per_source, 7);
        assert_eq!(
            t.ws_config.origins,
            vec!["https://desk.example".to_string()]
        );
        let tls = t.tls_config.unwrap();
        assert_eq!((tls.cert, tls.key), (c, k));
        assert_eq!(tls.reload_every, Duration::from_secs(2));
        // A WebSocket listener alone is enough of a listener.
        assert!(parse("[sip]\nws_listen = [\"127.0.0.1:8088\"]\n").is_ok());
    }

    #[test]
    fn demo_config_listens_for_browsers_on_loopback() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let cfg = Config::load(&dir.join("hotline.toml")).unwrap();
        let ws = cfg.sip.transports().ws;
        assert!(
            !ws.is_empty() && ws.iter().all(|a| a.ip().is_loopback()),
            "{ws:?}"
        );
    }

    #[test]
    fn bad_transport_config_is_located() {
        let e = parse("[sip]\ntls_listen = [\"127.0.0.1:5061\"]\n").unwrap_err();
        assert!(e.to_string().contains("need [sip.tls]"), "{e}");
        let e = parse(
            "[sip]\nwss_listen = [\"127.0.0.1:8089\"]\n[sip.tls]\ncert = \"/nonexistent/hotline.crt\"\nkey = \"/nonexistent/hotline.key\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (4, 8), "{e}");
        assert!(e.to_string().contains("/nonexistent/hotline.crt"), "{e}");
        // Key of another certificate.
        let (c, _) = cert_pair("mismatch-a");
        let (_, k) = cert_pair("mismatch-b");
        let e = parse(&format!(
            "[sip]\ntls_listen = [\"127.0.0.1:5061\"]\n[sip.tls]\ncert = {c:?}\nkey = {k:?}\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\nstatic_route = \"sip:192.0.2.1:5061;transport=tls\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("[sip.tls] ca"), "{e}");
        let e = parse("[sip]\nws_listen = [\"127.0.0.1:8088\"]\n[sip.ws]\norigins = [\"desk\"]\n")
            .unwrap_err();
        assert_eq!((e.line, e.column), (4, 12), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[sip.tls]\ncert = \"a\"\nkee = \"b\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("kee"), "{e}");
    }
}
