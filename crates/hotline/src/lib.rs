//! Hotline's wiring: configuration in, running services out. The binary (`main.rs`) and
//! the integration tests (`sip-tests`) both start Hotline through [`start`].

pub mod config;
pub mod config_admin;
mod config_check;
pub mod config_extensions;
pub mod config_metrics;
mod config_redact;
pub mod config_reliab;
mod config_routes;
pub mod config_server;
pub mod config_voicemail;
pub mod config_webrtc;
pub mod prompts;
pub mod store;
pub mod supervision;

use std::io::Read;

use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;

use hotline_media::{LegTiming, PortAllocator, Prompt};
use hotline_sip::server::{Server, ServerConfig};
use hotline_switch::{DeskConfig, Route, Switch, SwitchConfig};

use crate::prompts::Voice;

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
    /// The CDR writer (with `[[numbers]]`): call control records every call through it.
    pub cdr: Option<store::Cdr>,
    /// `[metrics] listen`: the address and task of the separate `/metrics` listener.
    pub metrics: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl Hotline {
    /// Graceful drain (SIGTERM): new calls are refused (`[drain]`), calls in progress get
    /// the grace period, then the rest are hung up. Call [`Hotline::shutdown`] after it.
    pub async fn drain(&self, policy: &hotline_switch::DrainPolicy) -> hotline_switch::DrainReport {
        match &self.switch {
            Some(s) => s.drain(policy).await,
            None => hotline_switch::DrainReport::default(),
        }
    }

    /// Stops every service and waits for them.
    pub async fn shutdown(self) {
        if let Some((_, m)) = self.metrics {
            m.abort();
        }
        if let Some(c) = self.cti {
            c.shutdown().await;
        }
        if let Some(s) = self.switch {
            s.shutdown().await;
        }
        // After the calls: their records are flushed before we exit.
        if let Some(cdr) = self.cdr {
            cdr.close().await;
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
        ..cfg.sip.transports()
    })
}

/// Call control's configuration: routes, menus, hours, queue options, prompts. Prompts
/// given as text are spoken with espeak-ng (cached under `[media] prompt_cache`).
pub fn switch_config(
    cfg: &Config,
    music: Prompt,
    cdr: hotline_cdr::CdrSink,
) -> anyhow::Result<SwitchConfig> {
    let voice = Voice::new(&cfg.media);
    let mut out = SwitchConfig::new(HashMap::new(), cfg.media.rtp_ip, music, cdr);
    out.leg_timing = LegTiming {
        // 0 = off: a year is as good as never for a call.
        no_rtp_timeout: match cfg.media.no_rtp_timeout_secs {
            0 => std::time::Duration::from_secs(365 * 86_400),
            s => std::time::Duration::from_secs(s),
        },
        ..LegTiming::default()
    };
    out.session_timer = hotline_sip::session_timer::TimerPolicy {
        session_expires: cfg.sip.session_expires_secs,
        min_se: *cfg.sip.min_se_secs.get_ref(),
    };
    out.webrtc = config_webrtc::webrtc_settings(&cfg.media);
    out.acd = cfg.acd.clone();
    out.voice = voice.announcements()?.map(Arc::new);
    let closed = match &out.voice {
        Some(v) => v.closed.clone(),
        None => Prompt::from_samples(hotline_media::prompts::beep()),
    };
    let route = |t: &config::RouteTarget| target_route(t, &voice, &closed);
    for n in &cfg.numbers {
        out.routes
            .insert(n.number.get_ref().clone(), route(&n.target())?);
    }
    for m in &cfg.menus {
        let prompt = voice.prompt(m.prompt.as_deref(), m.say.as_deref())?;
        let mut choices = HashMap::new();
        for (k, t) in &m.choices {
            if let Some(c) = k.chars().next() {
                choices.insert(c, route(t.get_ref())?);
            }
        }
        let default = match &m.default {
            Some(d) => route(d.get_ref())?,
            None => Route::Hangup,
        };
        let menu = hotline_switch::Menu {
            name: m.name.get_ref().clone(),
            prompt,
            choices,
            timeout: std::time::Duration::from_secs(m.timeout_secs),
            retries: m.retries,
            invalid: out.voice.as_ref().map(|v| v.invalid.clone()),
            default,
        };
        out.menus.insert(menu.name.clone(), Arc::new(menu));
    }
    for h in &cfg.hours {
        out.hours.insert(h.name.get_ref().clone(), hours(h)?);
    }
    for q in &cfg.queues {
        let whisper = match (&q.whisper, &q.whisper_say) {
            (None, None) => None,
            (p, s) => Some(voice.prompt(p.as_deref(), s.as_deref())?),
        };
        let callback_key = q
            .callback_key
            .as_ref()
            .and_then(|k| k.get_ref().chars().next());
        let callback_prompt = match callback_key {
            Some(k) if voice.speaking() => {
                let name = match k {
                    '*' => "star".to_string(),
                    '#' => "the hash key".to_string(),
                    d => d.to_string(),
                };
                Some(voice.speak(&format!(
                    "To keep your place and be called back, press {name}."
                ))?)
            }
            _ => None,
        };
        let options = hotline_switch::QueueOptions {
            leave_key: q
                .leave_key
                .as_ref()
                .and_then(|k| k.get_ref().chars().next()),
            whisper,
            callback_key,
            callback_min_ewt_secs: q.callback_min_ewt_secs,
            callback_prompt,
        };
        out.queues.insert(q.name.get_ref().clone(), options);
    }
    out.voicemail = config_voicemail::boxes(cfg, &voice)?;
    out.extensions = config_extensions::options(cfg, &voice, &closed)?;
    out.users = cfg.users.iter().map(|u| u.name.get_ref().clone()).collect();
    out.trunk = cfg.sip.static_route.map(|r| r.0);
    out.dial_rules = config_reliab::dial_rules(cfg)?;
    out.qualify = cfg.qualify.policy();
    if cfg.media.record {
        std::fs::create_dir_all(&cfg.media.recordings).with_context(|| {
            format!(
                "creating recordings directory {}",
                cfg.media.recordings.display()
            )
        })?;
        out.recordings = Some(cfg.media.recordings.clone());
    }
    Ok(out)
}

/// A validated target as a switch route.
fn target_route(t: &config::RouteTarget, voice: &Voice, closed: &Prompt) -> anyhow::Result<Route> {
    let base = if let Some(q) = &t.queue {
        Route::Queue(q.clone())
    } else if let Some(u) = &t.extension {
        Route::Extension(u.clone())
    } else if let Some(m) = &t.menu {
        Route::Menu(m.clone())
    } else if let Some(b) = &t.voicemail {
        Route::Voicemail(b.clone())
    } else if t.say.is_some() || t.prompt.is_some() {
        Route::Closed(voice.prompt(t.prompt.as_deref(), t.say.as_deref())?)
    } else {
        Route::Hangup
    };
    Ok(match &t.hours {
        Some(h) => Route::Hours {
            hours: h.clone(),
            open: Box::new(base),
            closed: Box::new(match &t.closed {
                Some(c) => target_route(c, voice, closed)?,
                None => Route::Closed(closed.clone()),
            }),
        },
        None => base,
    })
}

/// A validated `[[hours]]` set.
fn hours(h: &config::HoursConfig) -> anyhow::Result<hotline_switch::Hours> {
    use hotline_switch::hours::{OpenRange, parse_date, parse_days, parse_hhmm, parse_tz};
    let e = anyhow::Error::msg;
    let mut open = Vec::new();
    for o in &h.open {
        let o = o.get_ref();
        open.push(OpenRange {
            days: parse_days(&o.days).map_err(e)?,
            from_min: parse_hhmm(&o.from).map_err(e)?,
            to_min: parse_hhmm(&o.to).map_err(e)?,
        });
    }
    let mut holidays = std::collections::HashSet::new();
    for d in &h.holidays {
        holidays.insert(parse_date(d.get_ref()).map_err(e)?);
    }
    Ok(hotline_switch::Hours {
        tz: parse_tz(h.timezone.get_ref()).map_err(e)?,
        open,
        holidays,
    })
}

/// Starts every service of `cfg`.
pub async fn start(cfg: &Config) -> anyhow::Result<Hotline> {
    start_inner(cfg, None).await
}

/// What the desk page gets from the server: `[admin]` word lists and the in-page phone's
/// settings (the WebSocket URL: `[cti] phone_ws_url`, else the first `wss_listen` /
/// `ws_listen` address actually bound, when it is a specific one).
fn desk_settings(cfg: &Config, sip: &Server) -> hotline_cti::DeskSettings {
    use hotline_sip::Transport;
    let a = cfg.admin_settings();
    let bound = |t: Transport, scheme: &str| {
        sip.addrs(t)
            .into_iter()
            .find(|a| !a.ip().is_unspecified())
            .map(|a| format!("{scheme}://{a}"))
    };
    let ws_url = cfg
        .cti
        .as_ref()
        .and_then(|c| c.phone_ws_url.clone())
        .or_else(|| bound(Transport::Wss, "wss"))
        .or_else(|| bound(Transport::Ws, "ws"));
    hotline_cti::DeskSettings {
        dispositions: a.dispositions,
        not_ready_reasons: a.not_ready_reasons,
        phone_ws_url: ws_url,
        phone_domain: cfg.sip.domains.first().cloned().unwrap_or_default(),
        sip_passwords: hotline_cti::SipPasswords(
            cfg.users
                .iter()
                .map(|u| (u.name.get_ref().clone(), u.password.clone()))
                .collect(),
        ),
    }
}

/// Starts every service of the configuration file `path`, with the admin API (`[cti]`
/// `/api/…`), which edits that file.
pub async fn start_file(path: &std::path::Path) -> anyhow::Result<Hotline> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let cfg = Config::parse(path, &text)?;
    start_inner(&cfg, Some((path, text))).await
}

async fn start_inner(
    cfg: &Config,
    file: Option<(&std::path::Path, String)>,
) -> anyhow::Result<Hotline> {
    for w in cfg.deprecations() {
        tracing::warn!("{w}");
    }
    if cfg.numbers.is_empty() {
        let sip = Server::start(sip_server_config(cfg)?)
            .await
            .context("starting the SIP server")?;
        let m = supervision::metrics_source(cfg, sip.shared_counters(), None, None, None, None)?;
        return Ok(Hotline {
            metrics: supervision::metrics_listener(cfg, m, None).await?,
            sip,
            switch: None,
            cti: None,
            crm: None,
            cdr: None,
        });
    }
    let [first, last] = *cfg.media.rtp_ports.get_ref();
    let ports = Arc::new(PortAllocator::new(first, last).context("RTP port range")?);
    if let Some(t) = &cfg.media.tick_ms {
        hotline_media::session::set_default_tick(std::time::Duration::from_millis(*t.get_ref()));
    }
    let music = match &cfg.media.music {
        Some(path) => Prompt::load(path)
            .with_context(|| format!("loading music on hold {}", path.display()))?,
        None => Prompt::from_samples(hotline_media::prompts::hold_music()),
    };
    let cdr = store::Cdr::open(&cfg.store).await?;
    let mut switch_cfg = switch_config(cfg, music.clone(), cdr.sink.clone())?;
    if let Some(p) = &cfg.media.shared_rtp_port {
        let addr = std::net::SocketAddr::new(cfg.media.rtp_ip, *p.get_ref());
        let port = hotline_media::SharedPort::bind(addr)
            .await
            .with_context(|| format!("binding the shared RTP port {addr}"))?;
        tracing::info!(%addr, "callers' and agents' RTP on the shared port");
        switch_cfg.shared_rtp = Some(Arc::new(port));
    }
    if !cfg.media.kernel_relay.is_empty() {
        let names = cfg.media.kernel_relay_interfaces();
        let relay = hotline_media::kernel::KernelRelay::attach(&names)
            .with_context(|| format!("[media] kernel_relay on {names:?}"))?;
        tracing::info!(interfaces = ?names, "in-kernel RTP relay attached");
        switch_cfg.kernel_relay = Some(Arc::new(relay));
    }
    let shared_rtp = switch_cfg.shared_rtp.clone();
    let kernel_relay = switch_cfg.kernel_relay.clone();
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
            let url = cfg.store.url.get_ref();
            Some(
                hotline_crm::Store::open(url, &store_cfg)
                    .await
                    .with_context(|| format!("opening the CRM store {}", store::redact(url)))?,
            )
        }
        None => None,
    };
    let mut desk = DeskConfig {
        store: crm.clone(),
        desk_login: cfg
            .cti
            .as_ref()
            .map(|c| c.desk_agents())
            .unwrap_or_default(),
        trusted: cfg.sip.trusted.iter().map(|n| n.0).collect(),
        ..DeskConfig::default()
    };
    if let Some(c) = &cfg.crm {
        desk.lookup_timeout = std::time::Duration::from_millis(c.lookup_timeout_ms);
    }
    if let Some(c) = &cfg.cti {
        desk.offer_ack_timeout = std::time::Duration::from_millis(c.offer_ack_timeout_ms);
        desk.phone_rejoin = std::time::Duration::from_secs(c.phone_rejoin_secs);
    }
    let switch = Switch::start_with_desk(switch_cfg, desk, app, events, ports)
        .context("starting call control")?;
    let m = supervision::metrics_source(
        cfg,
        sip.shared_counters(),
        Some(switch.stats()),
        Some(switch.ports()),
        shared_rtp,
        kernel_relay,
    )?;
    let metrics = supervision::metrics_listener(cfg, m.clone(), Some(switch.handle())).await?;
    let admin = match (&cfg.cti, file) {
        (Some(_), Some((path, text))) => {
            let store = config_admin::AdminStore::open(
                path,
                text,
                cfg,
                switch.handle(),
                music,
                cdr.sink.clone(),
                match (cdr.store(), &cdr.memory) {
                    (Some(s), _) => config_admin::Arrivals::Store(s),
                    (None, Some(m)) => config_admin::Arrivals::Memory(m.clone()),
                    (None, None) => config_admin::Arrivals::None,
                },
            )?;
            let (handle, rx) = hotline_cti::admin::AdminHandle::channel(64);
            tokio::spawn(config_admin::serve(rx, store));
            Some(handle)
        }
        _ => None,
    };
    let cti = match &cfg.cti {
        Some(c) => {
            let mut c = c.clone();
            c.supervision = supervision::supervision(cfg, m, cdr.store());
            c.desk = desk_settings(cfg, &sip);
            Some(
                hotline_cti::CtiServer::start_with_admin(c, switch.handle(), admin)
                    .await
                    .context("starting the CTI server")?,
            )
        }
        None => None,
    };
    Ok(Hotline {
        metrics,
        sip,
        switch: Some(switch),
        cti,
        crm,
        cdr: Some(cdr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo configuration becomes a switch configuration: the menu's keys lead to
    /// the queues, the menu number is gated by the office hours.
    #[test]
    fn demo_config_becomes_routes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut cfg = Config::load(&dir.join("hotline.toml")).unwrap();
        cfg.media.voice = false;
        cfg.media.record = false;
        let (cdr, _) = hotline_cdr::CdrSink::memory();
        let sw = switch_config(&cfg, Prompt::from_samples(vec![0; 8]), cdr).unwrap();
        let Route::Hours { hours, open, .. } = &sw.routes["4000"] else {
            panic!("{:?}", sw.routes["4000"]);
        };
        assert_eq!(hours, "office");
        assert_eq!(**open, Route::Menu("main".into()));
        let main = &sw.menus["main"];
        assert_eq!(main.choices[&'1'], Route::Queue("sales".into()));
        assert_eq!(main.choices[&'0'], Route::Extension("1003".into()));
        assert_eq!(sw.queues["sales"].leave_key, Some('*'));
        assert!(sw.queues["sales"].whisper.is_some());
        assert!(sw.voice.is_none(), "voice off: tones");
        assert!(sw.hours.contains_key("office"));
    }
}
