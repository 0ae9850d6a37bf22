//! Hotline's wiring: configuration in, running services out. The binary (`main.rs`) and
//! the integration tests (`sip-tests`) both start Hotline through [`start`].

pub mod config;

use std::io::Read;

use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;

use hotline_media::{LegTiming, PortAllocator, Prompt};
use hotline_sip::server::{Server, ServerConfig};
use hotline_switch::{DeskConfig, Route, Switch, SwitchConfig};

pub use config::Config;

/// A running Hotline.
pub struct Hotline {
    pub sip: Server,
    /// Call control, when the configuration has `[[numbers]]`.
    pub switch: Option<Switch>,
    /// The desk server, with `[cti]` (and `[[numbers]]`).
    pub cti: Option<hotline_cti::CtiServer>,
    /// The CRM store, with `[crm]`.
    pub crm: Option<hotline_crm::Store>,
}

impl Hotline {
    /// Stops every service and waits for them.
    pub async fn shutdown(self) {
        if let Some(c) = self.cti {
            c.shutdown().await;
        }
        if let Some(s) = self.switch {
            s.shutdown().await;
        }
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
    if cfg.numbers.is_empty() {
        let sip = Server::start(sip_server_config(cfg)?)
            .await
            .context("starting the SIP server")?;
        return Ok(Hotline {
            sip,
            switch: None,
            cti: None,
            crm: None,
        });
    }
    let [first, last] = *cfg.media.rtp_ports.get_ref();
    let ports = Arc::new(PortAllocator::new(first, last).context("RTP port range")?);
    let music = match &cfg.media.music {
        Some(path) => Prompt::load(path)
            .with_context(|| format!("loading music on hold {}", path.display()))?,
        None => Prompt::from_samples(hotline_media::prompts::hold_music()),
    };
    let routes: HashMap<String, Route> = cfg
        .numbers
        .iter()
        .map(|n| {
            let route = match (&n.queue, &n.extension) {
                (_, Some(user)) => Route::Extension(user.clone()),
                (Some(q), None) => Route::Queue(q.clone()),
                // Validation requires exactly one.
                (None, None) => Route::Queue(String::new()),
            };
            (n.number.get_ref().clone(), route)
        })
        .collect();
    let (sip, app, events) = Server::start_with_app(sip_server_config(cfg)?, 1024)
        .await
        .context("starting the SIP server")?;
    let crm = match &cfg.crm {
        Some(c) => {
            let store_cfg = hotline_crm::StoreConfig {
                default_region: c.default_region.clone(),
                pg_schema: c.schema.clone(),
                ..hotline_crm::StoreConfig::default()
            };
            Some(
                hotline_crm::Store::open(&c.store, &store_cfg)
                    .await
                    .with_context(|| format!("opening the CRM store {}", c.store))?,
            )
        }
        None => None,
    };
    let desk = DeskConfig {
        store: crm.clone(),
        desk_login: cfg
            .cti
            .as_ref()
            .map(|c| c.desk_agents())
            .unwrap_or_default(),
        ..DeskConfig::default()
    };
    let switch = Switch::start_with_desk(
        SwitchConfig {
            routes,
            media_ip: cfg.media.rtp_ip,
            music,
            leg_timing: LegTiming::default(),
            acd: cfg.acd.clone(),
        },
        desk,
        app,
        events,
        ports,
    )
    .context("starting call control")?;
    let cti = match &cfg.cti {
        Some(c) => Some(
            hotline_cti::CtiServer::start(c.clone(), switch.handle())
                .await
                .context("starting the CTI server")?,
        ),
        None => None,
    };
    Ok(Hotline {
        sip,
        switch: Some(switch),
        cti,
        crm,
    })
}
