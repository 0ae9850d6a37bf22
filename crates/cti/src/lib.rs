//! Hotline's CTI server: the WebSocket protocol agent desktops and supervisors speak
//! (`docs/cti-protocol.md`). It holds a [`SwitchHandle`] (commands in, events out) and the
//! CRM store; it never reaches into call control otherwise.
//!
//! * `GET /cti` upgrades to a WebSocket after checking the `Origin` against the allow-list
//!   (403 otherwise).
//! * Users log in with a password (argon2 hashes in the config) and get a token that
//!   expires; a dropped socket leaves the call and the session alone, and `auth.resume`
//!   with the token brings back the agent's state (with its version) and current call.
//! * Every message is authorised by role; every customer-record access is audited.
//! * Each socket has a bounded outbound queue: a desk that cannot keep up is disconnected
//!   (it resumes), so a slow client never grows the server's memory.

pub mod admin;
mod admin_page;
mod assets;
mod auth;
mod conn;
mod desk;
mod hub;
pub mod metrics;
pub mod protocol;
pub mod reports;
mod voicemail;
pub mod wall;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hotline_switch::SwitchHandle;
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::{hash_password, verify_password};

/// The crate's one error type.
#[derive(Debug, thiserror::Error)]
pub enum CtiError {
    #[error("invalid CTI configuration: {0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("metrics: {0}")]
    Metrics(String),
}

/// What the binary hands the supervisor pages besides the config: the Prometheus
/// recorder for `/metrics` and the CDR store for `/api/reports` (absent: 404 / 503).
#[derive(Debug, Clone, Default)]
pub struct Supervision {
    pub metrics: Option<metrics::MetricsSource>,
    pub reports: Option<reports::ReportSource>,
}

/// What the binary hands the desk besides the config: the word lists of `[admin]` as
/// loaded (the admin service's current lists win when it runs) and the in-page phone's
/// settings, so nothing is hard-coded in the page.
#[derive(Debug, Clone, Default)]
pub struct DeskSettings {
    /// Wrap-up codes; empty: any code is accepted.
    pub dispositions: Vec<String>,
    /// Not-ready reasons offered on the page.
    pub not_ready_reasons: Vec<String>,
    /// SIP-over-WebSocket URL for the page's phone (none: the page has no phone settings).
    pub phone_ws_url: Option<String>,
    /// SIP domain the page's phone registers in (empty: the URL's host).
    pub phone_domain: String,
    /// SIP passwords by SIP user (an agent's id is their SIP user).
    pub sip_passwords: SipPasswords,
}

/// SIP passwords, never printed by `Debug`.
#[derive(Clone, Default)]
pub struct SipPasswords(pub std::collections::HashMap<String, String>);

impl std::fmt::Debug for SipPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SipPasswords({} users)", self.0.len())
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Works calls: own state, own calls, customers of calls offered to them.
    Agent,
    /// Watches their queues: agent states, queue figures, customers of their queues' calls.
    Supervisor,
    /// Everything.
    Admin,
}

impl Role {
    /// The name used in the config (`role = "agent"`, `[[dial_rules]] role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

/// A desk login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtiUser {
    pub name: String,
    /// PHC string from `hotline passwd` (argon2id).
    pub password_hash: String,
    pub role: Role,
    /// The ACD agent id (SIP user) this login works as; required for `agent`.
    pub agent: Option<String>,
    /// Supervisors: the queues they see (empty: all).
    #[serde(default)]
    pub queues: Vec<String>,
}

/// `[cti]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtiConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Origins allowed to open the WebSocket, e.g. `"https://desk.example.com"`; `"*"`
    /// allows any (not for production). A request without Origin is refused.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// The server pings this often; a socket silent for three intervals is closed.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Frames queued per socket before the socket counts as a slow consumer.
    #[serde(default = "default_outbound_queue")]
    pub outbound_queue: usize,
    /// Largest accepted text frame (bigger ones get an error frame).
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// Roles allowed to search customers.
    #[serde(default = "default_search_roles")]
    pub search_roles: Vec<Role>,
    /// Whether agents with a CTI login start logged in and ready (default: they start
    /// logged out and log in from the desk). Agents without a CTI login always start ready.
    #[serde(default)]
    pub agents_start_logged_in: bool,
    /// How long an offer waits for the pop to be written to the agent's socket before
    /// the phone rings anyway.
    #[serde(default = "default_offer_ack")]
    pub offer_ack_timeout_ms: u64,
    #[serde(default, rename = "user")]
    pub users: Vec<CtiUser>,
    /// The SIP-over-WebSocket URL desks' in-page phones use, e.g.
    /// `"wss://hotline.example.com:8089"` (default: derived from `[sip] wss_listen` /
    /// `ws_listen` when they name a specific address).
    #[serde(default)]
    pub phone_ws_url: Option<String>,
    /// How long a bridged call waits for an agent's in-page phone that went away (page
    /// reload, network blip) before it goes back to the head of its queue (caller on
    /// music meanwhile; the agent becomes not ready, `phone_lost`).
    #[serde(default = "default_phone_rejoin")]
    pub phone_rejoin_secs: u64,
    /// `[cti.wall]`: wallboard colour thresholds.
    #[serde(default)]
    pub wall: wall::WallConfig,
    /// Set by the binary, not the file.
    #[serde(skip)]
    pub supervision: Supervision,
    /// Set by the binary, not the file.
    #[serde(skip)]
    pub desk: DeskSettings,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_token_ttl() -> u64 {
    12 * 3600
}
fn default_heartbeat() -> u64 {
    15
}
fn default_outbound_queue() -> usize {
    256
}
fn default_max_frame() -> usize {
    64 * 1024
}
fn default_phone_rejoin() -> u64 {
    30
}
fn default_offer_ack() -> u64 {
    250
}
fn default_search_roles() -> Vec<Role> {
    vec![Role::Supervisor, Role::Admin]
}

impl CtiConfig {
    /// Checks what serde cannot: hashes parse, names are unique, agents have an agent id.
    pub fn validate(&self) -> Result<(), CtiError> {
        self.check().map_err(|(_, e)| e)
    }

    /// [`CtiConfig::validate`], with the key in `[cti]` the error is about (`["user", "1",
    /// "password_hash"]`; empty: the table), so a config error can point at its line.
    pub fn check(&self) -> Result<(), (Vec<String>, CtiError)> {
        let at = |key: &[&str], m: String| {
            (
                key.iter().map(|k| k.to_string()).collect(),
                CtiError::Config(m),
            )
        };
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let i = i.to_string();
            if !seen.insert(u.name.as_str()) {
                return Err(at(
                    &["user", &i, "name"],
                    format!("user {:?} defined twice", u.name),
                ));
            }
            if let Err(e) = argon2::PasswordHash::new(&u.password_hash) {
                return Err(at(
                    &["user", &i, "password_hash"],
                    format!(
                        "user {:?}: password_hash is not a PHC string ({e}); make one with `hotline passwd`",
                        u.name
                    ),
                ));
            }
            if u.role == Role::Agent && u.agent.is_none() {
                return Err(at(
                    &["user", &i, "role"],
                    format!(
                        "user {:?}: role agent needs `agent = \"<acd agent id>\"`",
                        u.name
                    ),
                ));
            }
        }
        self.wall.validate().map_err(|m| at(&["wall"], m))?;
        if let Some(u) = &self.phone_ws_url
            && !(u.starts_with("ws://") || u.starts_with("wss://"))
        {
            return Err(at(
                &["phone_ws_url"],
                format!("phone_ws_url {u:?} must start with ws:// or wss://"),
            ));
        }
        let zero = [
            ("heartbeat_secs", self.heartbeat_secs == 0),
            ("token_ttl_secs", self.token_ttl_secs == 0),
            ("outbound_queue", self.outbound_queue == 0),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, z)| *z) {
            return Err(at(
                &[key],
                "heartbeat_secs, token_ttl_secs and outbound_queue must be > 0".into(),
            ));
        }
        Ok(())
    }

    /// ACD agents who log in from a desk (so the switch starts them logged out).
    pub fn desk_agents(&self) -> std::collections::HashSet<String> {
        if self.agents_start_logged_in {
            return Default::default();
        }
        self.users.iter().filter_map(|u| u.agent.clone()).collect()
    }
}

/// A running CTI server.
pub struct CtiServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    hub_task: JoinHandle<()>,
}

impl CtiServer {
    /// Binds, subscribes to the switch's events (before the first socket can connect, so
    /// no offer is missed) and serves.
    pub async fn start(cfg: CtiConfig, switch: SwitchHandle) -> Result<CtiServer, CtiError> {
        Self::start_with_admin(cfg, switch, None).await
    }

    /// [`CtiServer::start`] with the admin REST API (`/api/…`) served by `admin`.
    pub async fn start_with_admin(
        cfg: CtiConfig,
        switch: SwitchHandle,
        admin: Option<admin::AdminHandle>,
    ) -> Result<CtiServer, CtiError> {
        cfg.validate()?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| CtiError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| CtiError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let hub = Arc::new(hub::Hub::new(cfg, switch.clone(), admin.clone()));
        let hub_task = tokio::spawn(hub::run_events(hub.clone(), switch.subscribe()));
        let app = Router::new()
            .route("/cti", get(upgrade))
            .merge(metrics::routes())
            .merge(reports::routes())
            .merge(voicemail::routes())
            .merge(wall::routes())
            .merge(desk::routes())
            .merge(admin_page::routes())
            .with_state(hub.clone())
            .merge(admin::router(hub, admin));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "CTI server stopped");
            }
        });
        tracing::info!(%addr, "CTI listening");
        Ok(CtiServer {
            addr,
            stop: Some(stop_tx),
            task,
            hub_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; open sockets are closed.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.hub_task.abort();
        // Graceful shutdown waits for upgraded sockets too; bound it.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }
}

/// Whether `origin` may open a desk socket.
pub(crate) fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return false };
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

async fn upgrade(
    State(hub): State<Arc<hub::Hub>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if !origin_allowed(&hub.cfg.allowed_origins, origin) {
        tracing::info!(?origin, "CTI upgrade refused: origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    // Frames up to 16× the accepted size are read and answered with an error frame;
    // beyond that the transport closes the socket.
    ws.max_message_size(hub.cfg.max_frame_bytes.saturating_mul(16))
        .on_upgrade(move |socket| conn::serve(hub, socket))
}
