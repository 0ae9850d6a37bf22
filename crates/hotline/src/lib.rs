//! Hotline's wiring: configuration in, running services out. The binary (`main.rs`) and
//! the integration tests (`sip-tests`) both start Hotline through [`start`].

pub mod config;

use std::io::Read;

use anyhow::Context;
use hotline_sip::server::{Server, ServerConfig};

pub use config::Config;

/// A running Hotline.
pub struct Hotline {
    pub sip: Server,
}

impl Hotline {
    /// Stops every service and waits for them.
    pub async fn shutdown(self) {
        self.sip.shutdown().await;
    }
}

/// 32 random bytes from the OS, for nonce secrets.
fn os_secret() -> anyhow::Result<[u8; 32]> {
    let mut s = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut s))
        .context("reading /dev/urandom")?;
    Ok(s)
}

/// The SIP server configuration derived from the file.
pub fn sip_server_config(cfg: &Config) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig {
        udp: cfg.sip.udp.clone(),
        tcp: cfg.sip.tcp.clone(),
        core: cfg.core_config(os_secret()?),
        tcp_queue: 1024,
        max_connections: cfg.sip.max_connections,
    })
}

/// Starts every service of `cfg`.
pub async fn start(cfg: &Config) -> anyhow::Result<Hotline> {
    let sip = Server::start(sip_server_config(cfg)?)
        .await
        .context("starting the SIP server")?;
    Ok(Hotline { sip })
}
