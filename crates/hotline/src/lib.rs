//! Hotline's wiring: configuration in, running services out. The binary (`main.rs`) and
//! the integration tests (`sip-tests`) both start Hotline through [`start`].

pub mod config;

use std::io::Read;

use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;

use hotline_media::{LegTiming, PortAllocator, Prompt};
use hotline_sip::server::{Server, ServerConfig};
use hotline_switch::{Route, Switch, SwitchConfig};

pub use config::Config;

/// A running Hotline.
pub struct Hotline {
    pub sip: Server,
    /// Call control, when the configuration has `[[numbers]]`.
    pub switch: Option<Switch>,
}

impl Hotline {
    /// Stops every service and waits for them.
    pub async fn shutdown(self) {
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
        return Ok(Hotline { sip, switch: None });
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
    let switch = Switch::start(
        SwitchConfig {
            routes,
            media_ip: cfg.media.rtp_ip,
            music,
            leg_timing: LegTiming {
                // 0 = off: a year is as good as never for a call.
                no_rtp_timeout: match cfg.media.no_rtp_timeout_secs {
                    0 => std::time::Duration::from_secs(365 * 86_400),
                    s => std::time::Duration::from_secs(s),
                },
                ..LegTiming::default()
            },
            acd: cfg.acd.clone(),
            session_timer: hotline_sip::session_timer::TimerPolicy {
                session_expires: cfg.sip.session_expires_secs,
                min_se: *cfg.sip.min_se_secs.get_ref(),
            },
        },
        app,
        events,
        ports,
    )
    .context("starting call control")?;
    Ok(Hotline {
        sip,
        switch: Some(switch),
    })
}
