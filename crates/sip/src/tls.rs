//! TLS for SIP/TLS (RFC 3261 §26) and WSS (RFC 7118): a rustls server configuration whose
//! certificate is reloaded when its PEM files change.
//!
//! The certificate lives behind a resolver ([`ReloadingCert`]) rather than in the
//! `ServerConfig` itself, so a reload swaps one `Arc` and every handshake after it gets the
//! new chain while connections already up keep the session they negotiated.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::Error;
use crate::proxy::Counters;

/// Where the certificate chain and key are, and how often to look for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification time and size are checked (0 = never reload).
    pub reload_every: Duration,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{}: {what}", path.display()))
}

/// Loads and checks a certificate chain and its key: the key must sign for the leaf.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(cert, e))?;
    if chain.is_empty() {
        return Err(tls_err(cert, "no CERTIFICATE in the file"));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e))?;
    let signer = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| tls_err(key, e))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| tls_err(key, format!("does not match the certificate: {e}")))?;
    Ok(ck)
}

/// The client side, for TLS peers Hotline dials itself (a trunk on `;transport=tls`):
/// their certificates are checked against the PEM roots in `ca`, by IP address (the core
/// only knows IP literals).
pub fn client_connector(ca: &Path) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| tls_err(ca, e))? {
        roots
            .add(c.map_err(|e| tls_err(ca, e))?)
            .map_err(|e| tls_err(ca, e))?;
    }
    if roots.is_empty() {
        return Err(tls_err(ca, "no CERTIFICATE in the file"));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// The current certificate; swapped by the reload task.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, ck: CertifiedKey) {
        let ck = Arc::new(ck);
        match self.current.write() {
            Ok(mut g) => *g = ck,
            Err(p) => *p.into_inner() = ck,
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The server side of TLS: the acceptor every TLS and WSS listener shares, and a watch
/// of how many reloads took effect (tests and operators can await the next one).
#[derive(Clone)]
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    cert: Arc<ReloadingCert>,
    cfg: TlsConfig,
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer").field("cfg", &self.cfg).finish()
    }
}

/// Modification time and length: what the reload task compares.
fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl TlsServer {
    /// Loads the certificate (errors name the file) and builds the acceptor.
    pub fn new(cfg: TlsConfig) -> Result<TlsServer, Error> {
        let ck = load_certified_key(&cfg.cert, &cfg.key)?;
        let cert = Arc::new(ReloadingCert {
            current: RwLock::new(Arc::new(ck)),
        });
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        Ok(TlsServer {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            cert,
            cfg,
            generation: watch::channel(0).0,
        })
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Reloads the files now. On error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), Error> {
        self.swap()?;
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    fn swap(&self) -> Result<(), Error> {
        let ck = load_certified_key(&self.cfg.cert, &self.cfg.key)?;
        self.cert.set(ck);
        Ok(())
    }

    /// Reloads that took effect so far; `changed()` on it wakes on the next one.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The leaf certificate handshakes get now (DER).
    pub fn current_leaf(&self) -> Option<CertificateDer<'static>> {
        self.cert.get().cert.first().cloned()
    }

    /// Polls the files every `reload_every` and reloads when either changed. A half-written
    /// pair (key not matching yet) fails, is counted, and is retried at the next change.
    pub(crate) async fn watch_files(self, counters: Arc<Counters>) {
        if self.cfg.reload_every.is_zero() {
            return;
        }
        let mut seen = (stamp(&self.cfg.cert), stamp(&self.cfg.key));
        let mut tick = tokio::time::interval(self.cfg.reload_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = (stamp(&self.cfg.cert), stamp(&self.cfg.key));
            if now == seen {
                continue;
            }
            match self.swap() {
                Ok(()) => {
                    seen = now;
                    // Counted before the watch fires, so a woken watcher sees the count.
                    Counters::inc(&counters.tls_reloads);
                    self.generation.send_modify(|g| *g += 1);
                    tracing::info!(cert = %self.cfg.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    // Keep `seen` so a pair still being written is tried again next tick.
                    Counters::inc(&counters.tls_reload_failed);
                    tracing::warn!(error = %e, "TLS certificate reload failed; keeping the old one");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hotline-tls-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[test]
    fn loads_a_pair_and_names_the_bad_file() {
        let d = tmp("load");
        let (cert, key) = write_pair(&d, "a.test");
        assert!(load_certified_key(&cert, &key).is_ok());
        let missing = d.join("missing.crt");
        let e = load_certified_key(&missing, &key).unwrap_err().to_string();
        assert!(e.contains("missing.crt"), "{e}");
        // The key of another certificate does not match.
        let (_, other_key) = write_pair(&d, "b.test");
        let e = load_certified_key(&cert, &other_key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match"), "{e}");
        // A key file given as the certificate: no CERTIFICATE block.
        let e = load_certified_key(&key, &key).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn reload_swaps_the_leaf_and_a_failed_reload_keeps_it() {
        let d = tmp("reload");
        let (cert, key) = write_pair(&d, "one.test");
        let t = TlsServer::new(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            reload_every: Duration::ZERO,
        })
        .unwrap();
        let first = t.current_leaf().unwrap();
        let (c2, k2) = write_pair(&d, "two.test");
        std::fs::copy(&c2, &cert).unwrap();
        // Certificate new, key still old: refused, the old pair stays.
        assert!(t.reload().is_err());
        assert_eq!(t.current_leaf().unwrap(), first);
        std::fs::copy(&k2, &key).unwrap();
        t.reload().unwrap();
        assert_ne!(t.current_leaf().unwrap(), first);
        assert_eq!(*t.reloads().borrow(), 1);
    }
}
