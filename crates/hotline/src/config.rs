//! Hotline's configuration file (TOML), validated on load. Errors name the file, line and
//! column, so an admin can find the mistake.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hotline_sip::auth::Algorithm;
use hotline_sip::guard::GuardConfig;
use hotline_sip::msg::Limits;
use hotline_sip::registrar::RegistrarConfig;
use hotline_sip::transaction::TimerConfig;
use hotline_sip::{Cidr, CoreConfig, Target, Transport};
use serde::Deserialize;
use toml::Spanned;

#[path = "config_transport.rs"]
pub mod transport;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    #[serde(default)]
    pub users: Vec<User>,
    /// RTP for calls Hotline answers (the `[[numbers]]`).
    #[serde(default)]
    pub media: MediaConfig,
    /// Numbers Hotline answers itself (the B2BUA) instead of proxying.
    #[serde(default)]
    pub numbers: Vec<Number>,
    /// Queues and agents (`[[acd.queue]]`, `[[acd.agent]]`, agent ids are SIP users).
    pub acd: Option<hotline_acd::AcdConfig>,
    /// IVR menus (`[[menus]]`).
    #[serde(default)]
    pub menus: Vec<MenuConfig>,
    /// Business-hours sets (`[[hours]]`).
    #[serde(default)]
    pub hours: Vec<HoursConfig>,
    /// Call-path options of ACD queues (`[[queues]]`: leave key, whisper).
    #[serde(default)]
    pub queues: Vec<QueueOptionsConfig>,
    /// The CRM store: callers are identified for screen pops, calls land in the trail.
    pub crm: Option<CrmSection>,
    /// Agent desktops and supervisors over WebSocket (`[cti]`, `[[cti.user]]`).
    pub cti: Option<hotline_cti::CtiConfig>,
    /// `[store]`: the database of the CRM and the CDRs.
    #[serde(default)]
    pub store: StoreSettings,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: crate::config_metrics::MetricsSettings,
    /// `[admin]`: versions, audit log and prompts of the admin API; dispositions and
    /// not-ready reasons.
    pub admin: Option<crate::config_admin::AdminSection>,
    /// `[drain]`, `[qualify]`, `[[dial_rules]]`: see `config_reliab`.
    #[serde(default)]
    pub drain: crate::config_reliab::DrainConfig,
    #[serde(default)]
    pub qualify: crate::config_reliab::QualifyConfig,
    #[serde(default)]
    pub dial_rules: Vec<crate::config_reliab::DialRuleConfig>,
    /// Voicemail boxes (`[[voicemail]]`, see `config_voicemail`).
    #[serde(default)]
    pub voicemail: Vec<crate::config_voicemail::VoicemailConfig>,
    /// Ring timeout and no-answer destination of users (`[[extensions]]`, see
    /// `config_extensions`).
    #[serde(default)]
    pub extensions: Vec<crate::config_extensions::ExtensionConfig>,
    /// `[server]`: the process (worker threads).
    #[serde(default)]
    pub server: crate::config_server::ServerSettings,
}

/// `[store]`: one database for the CRM and the CDRs (their migrations share it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://data/hotline.db` (a path, relative to the working directory),
    /// `postgres://user@host/db`, or `memory` (CDRs kept in memory only: tests, demos).
    #[serde(default = "default_store_url")]
    pub url: Spanned<String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: default_store_url(),
        }
    }
}

fn default_store_url() -> Spanned<String> {
    Spanned::new(0..0, "sqlite://data/hotline.db".into())
}

impl StoreSettings {
    /// Whether the file sets `url` (the default's span is empty: a key never starts at 0,
    /// the `[store]` header precedes it).
    fn explicit(&self) -> bool {
        !self.url.span().is_empty()
    }
}

/// The same database whether written `sqlite://PATH`, `sqlite:PATH` or `PATH`.
fn same_store(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> &str {
        s.strip_prefix("sqlite:")
            .map(|p| p.trim_start_matches("//"))
            .unwrap_or(s)
    }
    norm(a) == norm(b)
}

/// Where a number, a menu choice or a closed branch goes: exactly one of `queue`,
/// `extension`, `menu`, a message (`say` or `prompt`, then hang up) or `hangup = true`;
/// optionally gated by `hours` with a `closed` alternative.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTarget {
    pub queue: Option<String>,
    pub extension: Option<String>,
    pub menu: Option<String>,
    /// A message spoken with espeak-ng (cached), then hang up.
    pub say: Option<String>,
    /// A message from an 8 kHz WAV file, then hang up.
    pub prompt: Option<PathBuf>,
    pub hangup: Option<bool>,
    /// A voicemail box (`[[voicemail]]` name).
    pub voicemail: Option<String>,
    /// Business hours gating this target.
    pub hours: Option<String>,
    /// Where calls go outside `hours` (default: the spoken closed message).
    pub closed: Option<Box<RouteTarget>>,
}

/// `[[menus]]`: an IVR menu.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuConfig {
    pub name: Spanned<String>,
    /// The menu prompt: a WAV file …
    pub prompt: Option<PathBuf>,
    /// … or text spoken with espeak-ng.
    pub say: Option<String>,
    /// Key (`"0"`-`"9"`, `"*"`, `"#"`) → target.
    #[serde(default)]
    pub choices: std::collections::BTreeMap<String, Spanned<RouteTarget>>,
    /// Seconds of silence after the prompt before it counts as no choice.
    #[serde(default = "default_menu_timeout")]
    pub timeout_secs: u64,
    /// Further tries after a wrong key or silence.
    #[serde(default = "default_menu_retries")]
    pub retries: u32,
    /// Where callers go when the tries run out (default: hang up).
    pub default: Option<Spanned<RouteTarget>>,
}

fn default_menu_timeout() -> u64 {
    5
}
fn default_menu_retries() -> u32 {
    2
}

/// `[[hours]]`: opening hours in one time zone, with holidays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    pub name: Spanned<String>,
    /// `"UTC"`, `"+02:00"` or an IANA name (`"Europe/Berlin"`).
    #[serde(default = "default_tz")]
    pub timezone: Spanned<String>,
    /// Opening ranges, e.g. `{ days = "mon-fri", from = "08:00", to = "18:00" }`.
    #[serde(default)]
    pub open: Vec<Spanned<OpenConfig>>,
    /// Closed all day (`"2026-12-25"`).
    #[serde(default)]
    pub holidays: Vec<Spanned<String>>,
}

fn default_tz() -> Spanned<String> {
    Spanned::new(0..0, "UTC".into())
}

/// One opening range.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenConfig {
    pub days: String,
    pub from: String,
    pub to: String,
}

/// `[[queues]]`: call-path options of the ACD queue with the same name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueOptionsConfig {
    pub name: Spanned<String>,
    /// A key that takes the caller out of the queue to its fallback.
    pub leave_key: Option<Spanned<String>>,
    /// Whisper to the agent on answer: a WAV file …
    pub whisper: Option<PathBuf>,
    /// … or text spoken with espeak-ng (e.g. the queue's name).
    pub whisper_say: Option<String>,
    /// A key that keeps the caller's place as a callback request and hangs up.
    pub callback_key: Option<Spanned<String>>,
    /// The callback is offered when the expected wait is at least this long.
    #[serde(default = "default_callback_ewt")]
    pub callback_min_ewt_secs: u64,
}

fn default_callback_ewt() -> u64 {
    120
}

/// `[crm]`. The database is `[store] url`, shared with the call records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmSection {
    /// Deprecated: the CRM database before `[store] url` was the one setting. Alone it is
    /// still used (as `[store] url`, with a warning); next to a different `[store] url` it
    /// is a config error, since CRM and call records would silently split.
    pub store: Option<Spanned<String>>,
    /// ISO 3166 region for reading national-format caller numbers.
    #[serde(default = "default_region")]
    pub default_region: String,
    /// PostgreSQL only: the schema to use (default: the server's search_path).
    pub schema: Option<String>,
    /// Bound on identifying a caller at arrival; past it the call is routed with a pop
    /// that says "lookup unavailable".
    #[serde(default = "default_lookup_timeout")]
    pub lookup_timeout_ms: u64,
}

fn default_lookup_timeout() -> u64 {
    1000
}

fn default_region() -> String {
    "DE".into()
}

/// `[media]`: where call media is anchored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Address RTP binds to and SDP advertises (must be reachable by phones).
    #[serde(default = "default_rtp_ip")]
    pub rtp_ip: std::net::IpAddr,
    /// First and last port of the RTP/RTCP range (even/odd pairs inside it).
    #[serde(default = "default_rtp_ports")]
    pub rtp_ports: Spanned<[u16; 2]>,
    /// Music on hold (8 kHz WAV); without it a generated tune plays.
    pub music: Option<PathBuf>,
    /// Hang up both legs of a call when a leg sends no RTP this long (not while on
    /// hold); 0 = never.
    #[serde(default = "default_no_rtp_timeout")]
    pub no_rtp_timeout_secs: u64,
    /// Directory for call recordings (stereo WAV: caller left, agent right).
    #[serde(default = "default_recordings")]
    pub recordings: PathBuf,
    /// Whether bridged calls are recorded.
    #[serde(default = "yes")]
    pub record: bool,
    /// Where prompts spoken from text (`say`) and the announcement voice are cached.
    #[serde(default = "default_prompt_cache")]
    pub prompt_cache: PathBuf,
    /// Speak announcements and messages with espeak-ng + sox when installed (else tones).
    #[serde(default = "yes")]
    pub voice: bool,
    /// Public address offered to browser agents besides `rtp_ip` (`config_webrtc`).
    pub webrtc_public_ip: Option<Spanned<std::net::IpAddr>>,
    /// Answer browsers as an ICE-lite server (`a=ice-lite`, host candidates only: `rtp_ip`
    /// and `webrtc_public_ip`); the browser runs the checks (`config_webrtc`).
    #[serde(default)]
    pub webrtc_ice_lite: bool,
    /// How often a call's media task reads its RTP sockets, in ms (0 = on every
    /// datagram); unset: `hotline_media::session::DEFAULT_TICK`. Each tick adds up to its
    /// length of one-way delay and saves a thread wake-up per packet.
    pub tick_ms: Option<Spanned<u64>>,
    /// One UDP port on `rtp_ip`, outside `rtp_ports`, that callers' and the ACD's agents'
    /// RTP shares (one socket read in batches instead of a socket per leg: less CPU per
    /// call). A phone whose SDP names another address than its signalling comes from
    /// (behind NAT) still gets a port pair of its own. Unset: a pair per leg.
    pub shared_rtp_port: Option<Spanned<u16>>,
    /// Network interfaces (e.g. `["eth0"]`; `"lo"` for phones on this host) on whose
    /// ingress the in-kernel RTP relay runs: a bridged call's audio is forwarded by the
    /// kernel, without waking Hotline, while nothing else needs it (a recorded call's
    /// audio is copied to its recorder by the kernel). Needs root (CAP_BPF and
    /// CAP_NET_ADMIN) and a build with clang. Empty (the default): off.
    #[serde(default)]
    pub kernel_relay: Vec<Spanned<String>>,
}

impl MediaConfig {
    /// The names in `kernel_relay`, as the relay attaches to them.
    pub fn kernel_relay_interfaces(&self) -> Vec<&str> {
        self.kernel_relay
            .iter()
            .map(|n| n.get_ref().as_str())
            .collect()
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_ip: default_rtp_ip(),
            rtp_ports: default_rtp_ports(),
            music: None,
            no_rtp_timeout_secs: default_no_rtp_timeout(),
            recordings: default_recordings(),
            record: true,
            prompt_cache: default_prompt_cache(),
            voice: true,
            webrtc_public_ip: None,
            webrtc_ice_lite: false,
            tick_ms: None,
            shared_rtp_port: None,
            kernel_relay: Vec::new(),
        }
    }
}

fn default_no_rtp_timeout() -> u64 {
    30
}

fn default_recordings() -> PathBuf {
    PathBuf::from("data/recordings")
}

fn default_prompt_cache() -> PathBuf {
    PathBuf::from("data/prompts")
}

fn default_rtp_ip() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}

fn default_rtp_ports() -> Spanned<[u16; 2]> {
    Spanned::new(0..0, [20000, 29999])
}

/// A dialled number and where it goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Number {
    /// The Request-URI user, e.g. `"4000"`.
    pub number: Spanned<String>,
    /// The queue callers of this number wait in (music on hold).
    pub queue: Option<String>,
    /// Or: the user (agent/extension) Hotline calls for this number, bridging the legs.
    pub extension: Option<String>,
    /// Or: an IVR menu.
    pub menu: Option<String>,
    /// Business hours gating the number.
    pub hours: Option<String>,
    /// Where calls go outside `hours` (default: the spoken closed message).
    pub closed: Option<Spanned<RouteTarget>>,
}

impl Number {
    /// The number's own route as a [`RouteTarget`].
    pub fn target(&self) -> RouteTarget {
        RouteTarget {
            queue: self.queue.clone(),
            extension: self.extension.clone(),
            menu: self.menu.clone(),
            hours: self.hours.clone(),
            closed: self.closed.as_ref().map(|c| Box::new(c.get_ref().clone())),
            ..RouteTarget::default()
        }
    }
}

/// `[sip]`: listen addresses, domain, security and protocol limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// UDP listen addresses, e.g. `["0.0.0.0:5060", "[::]:5060"]`.
    #[serde(default)]
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    /// Host names that address this server.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Networks whose requests skip digest authentication (trunks, the benchmark).
    #[serde(default)]
    pub trusted: Vec<Net>,
    /// Where requests for unknown users go (a trunk), e.g. `"sip:10.0.0.1:5060"`.
    pub static_route: Option<Route>,
    /// Challenge INVITEs and other out-of-dialog requests from untrusted sources (407).
    #[serde(default = "yes")]
    pub authenticate_requests: bool,
    /// Digest algorithms offered, most preferred first.
    #[serde(default = "default_algorithms")]
    pub digest_algorithms: Vec<Alg>,
    #[serde(default = "default_nonce_ttl")]
    pub nonce_ttl_secs: u64,
    #[serde(default = "default_min_expires")]
    pub min_expires: Spanned<u32>,
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    #[serde(default = "default_expires")]
    pub default_expires: u32,
    #[serde(default = "default_max_contacts")]
    pub max_contacts: usize,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Admission control: live transactions above which new requests get 503. A UDP
    /// transaction lives 64*T1 (32 s) after its final response, at well under 1 KB.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
    /// Maximum simultaneous inbound stream connections (TCP, TLS, WS and WSS together).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// RFC 3261 timers in milliseconds.
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
    /// Session timer (RFC 4028) Hotline asks of callers that propose none; 0 = only
    /// honour the callers' own. Expiry without refresh hangs up both legs.
    #[serde(default = "default_session_expires")]
    pub session_expires_secs: u32,
    /// Smallest session interval accepted (422 below it); the RFC's floor is 90.
    #[serde(default = "default_min_se")]
    pub min_se_secs: Spanned<u32>,
    /// `[sip.guard]`: flood, brute-force and scanner defence.
    #[serde(default)]
    pub guard: GuardToml,
    /// SIP over TLS listen addresses (e.g. `["0.0.0.0:5061"]`; need `[sip.tls]`).
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
    /// SIP over WebSocket (browser softphones) listen addresses.
    #[serde(default)]
    pub ws_listen: Vec<SocketAddr>,
    /// SIP over secure WebSocket listen addresses (need `[sip.tls]`).
    #[serde(default)]
    pub wss_listen: Vec<SocketAddr>,
    /// Stream connections one source IP may hold (trusted networks exempt).
    #[serde(default = "transport::default_per_source")]
    pub max_connections_per_source: usize,
    /// `[sip.tls]`: certificate and key (see [`transport`]).
    pub tls: Option<transport::TlsToml>,
    /// `[sip.ws]`: WebSocket Origin allow-list.
    #[serde(default)]
    pub ws: transport::WsToml,
}

/// `[sip.guard]`; every key optional (defaults in [`GuardConfig::default`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardToml {
    /// Sustained SIP requests per second per source IP (0 = unlimited).
    pub rate: u32,
    /// Requests a source may send at once above `rate`.
    pub burst: u32,
    /// Seconds a flooding source is ignored.
    pub block_secs: u64,
    /// Networks never limited (trunks); `[sip] trusted` networks are exempt too.
    pub allow: Vec<Net>,
    /// Source addresses tracked at most.
    pub max_sources: usize,
    /// Digest failures within `auth_window_secs` that lock a source out (0 = never).
    pub auth_failures: u32,
    pub auth_window_secs: u64,
    pub lockout_secs: u64,
    /// Drop requests from scanner User-Agents silently.
    pub drop_scanners: bool,
    /// User-Agent substrings (case-insensitive) that mark a scanner.
    pub scanner_agents: Vec<String>,
}

impl Default for GuardToml {
    fn default() -> Self {
        let d = GuardConfig::default();
        Self {
            rate: d.rate,
            burst: d.burst,
            block_secs: d.block.as_secs(),
            allow: vec![],
            max_sources: d.max_sources,
            auth_failures: d.auth_failures,
            auth_window_secs: d.auth_window.as_secs(),
            lockout_secs: d.lockout.as_secs(),
            drop_scanners: true,
            scanner_agents: d.scanner_agents,
        }
    }
}

impl GuardToml {
    fn to_config(&self) -> GuardConfig {
        GuardConfig {
            rate: self.rate,
            burst: self.burst,
            block: Duration::from_secs(self.block_secs),
            allow: self.allow.iter().map(|n| n.0).collect(),
            max_sources: self.max_sources,
            auth_failures: self.auth_failures,
            auth_window: Duration::from_secs(self.auth_window_secs),
            lockout: Duration::from_secs(self.lockout_secs),
            scanner_agents: if self.drop_scanners {
                self.scanner_agents.clone()
            } else {
                vec![]
            },
        }
    }
}

fn default_session_expires() -> u32 {
    1800
}

fn default_min_se() -> Spanned<u32> {
    Spanned::new(0..0, 90)
}

/// A SIP account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: Spanned<String>,
    pub password: String,
}

/// A trusted network (`"127.0.0.0/8"`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Net(pub Cidr);

impl TryFrom<String> for Net {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
            .map(Net)
            .map_err(|e: hotline_sip::Error| e.to_string())
    }
}

/// A static route target: `sip:IP[:port][;transport=tcp|tls]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Route(pub Target);

impl TryFrom<String> for Route {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad =
            || format!("invalid static_route {s:?} (expected sip:IP[:port][;transport=tcp|tls])");
        let rest = s.strip_prefix("sip:").ok_or_else(bad)?;
        let (hp, params) = rest.split_once(';').unwrap_or((rest, ""));
        let addr: SocketAddr = hp
            .parse()
            .or_else(|_| {
                hp.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 5060))
            })
            .map_err(|_| bad())?;
        let transport = match params.to_ascii_lowercase().as_str() {
            "" | "transport=udp" => Transport::Udp,
            "transport=tcp" => Transport::Tcp,
            // Dialled with the roots of `[sip.tls] ca` (see config_transport).
            "transport=tls" => Transport::Tls,
            _ => return Err(bad()),
        };
        Ok(Route(Target { transport, addr }))
    }
}

/// A digest algorithm name.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Alg(pub Algorithm);

impl TryFrom<String> for Alg {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Algorithm::from_name(&s)
            .map(Alg)
            .ok_or_else(|| format!("unknown digest algorithm {s:?} (MD5 or SHA-256)"))
    }
}

fn default_realm() -> String {
    "hotline".into()
}
fn yes() -> bool {
    true
}
fn default_algorithms() -> Vec<Alg> {
    vec![Alg(Algorithm::Sha256), Alg(Algorithm::Md5)]
}
fn default_nonce_ttl() -> u64 {
    300
}
fn default_min_expires() -> Spanned<u32> {
    Spanned::new(0..0, 60)
}
fn default_max_expires() -> u32 {
    7200
}
fn default_expires() -> u32 {
    3600
}
fn default_max_contacts() -> usize {
    10
}
fn default_max_message_size() -> usize {
    65_535
}
fn default_max_headers() -> usize {
    100
}
fn default_max_transactions() -> usize {
    500_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4000
}
fn default_t4() -> u64 {
    5000
}

/// A configuration error located in its file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn locate(file: &Path, text: &str, offset: usize, message: String) -> ConfigError {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

/// Where the key or value at `path` (`&["cti", "user", "1", "agent"]`: keys, and indices
/// into arrays) is written in `text`, from the TOML parser's spans: a text search would
/// hit the same words in a comment, a string or another table. A value counts before its
/// key, a table's header before the key naming it (a dotted key, an inline table). Where
/// the path is not all written (a default), the deepest part that is counts (the table of
/// a missing key); 0 when none is.
pub(crate) fn span_at(text: &str, path: &[&str]) -> usize {
    use toml_edit::{Item, Table, TableLike, Value};
    #[derive(Clone, Copy)]
    enum Node<'a> {
        Item(&'a Item),
        Value(&'a Value),
        Table(&'a Table),
    }
    let Ok(doc) = toml_edit::Document::parse(text) else {
        return 0;
    };
    let mut node = Node::Item(doc.as_item());
    let mut at = 0;
    for seg in path {
        let table: Option<&dyn TableLike> = match node {
            Node::Item(i) => i.as_table_like(),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn TableLike),
            Node::Table(t) => Some(t),
        };
        let (key, next) = match (table, seg.parse::<usize>()) {
            (Some(t), _) => match t.get_key_value(seg) {
                Some((k, i)) => (k.span(), Node::Item(i)),
                None => break,
            },
            (None, Ok(n)) => {
                let next = match node {
                    Node::Item(Item::ArrayOfTables(a)) => a.get(n).map(Node::Table),
                    Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                        a.get(n).map(Node::Value)
                    }
                    _ => None,
                };
                match next {
                    Some(next) => (None, next),
                    None => break,
                }
            }
            (None, Err(_)) => break,
        };
        let own = match next {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        };
        if let Some(s) = own.or(key) {
            at = s.start;
        }
        node = next;
    }
    at
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Self::parse(path, &text)?)
    }

    /// Parses and validates configuration text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            locate(path, text, offset, e.message().to_string())
        })?;
        cfg.resolve_store();
        match cfg.validate_all(path, text).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(cfg),
        }
    }

    /// A deprecated `[crm] store` without `[store] url` becomes the `[store] url` (so the
    /// CDRs follow the CRM, as the one-setting rule says).
    pub(crate) fn resolve_store(&mut self) {
        if let Some(s) = self.crm.as_ref().and_then(|c| c.store.clone())
            && !self.store.explicit()
        {
            self.store.url = s;
        }
    }

    /// Warnings about settings that still work but should change (logged at start and
    /// listed by `hotline config check`).
    pub fn deprecations(&self) -> Vec<String> {
        match self.crm.as_ref().and_then(|c| c.store.as_ref()) {
            Some(_) => vec![
                "[crm] store is deprecated: set [store] url, the one database of the CRM \
                 and the call records (and remove [crm] store)"
                    .into(),
            ],
            None => Vec::new(),
        }
    }

    /// Every validation error of a parsed file, in file order of the checks (the admin
    /// sees them all at once: `hotline config check`, the admin API).
    pub fn validate_all(&self, path: &Path, text: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let sip_at = span_at(text, &["sip"]);
        if !self.sip.has_listener() {
            errs.push(locate(
                path,
                text,
                sip_at,
                "[sip] needs at least one udp, tcp, tls_listen, ws_listen or wss_listen address"
                    .into(),
            ));
        }
        if let Err(e) = self.validate_transports(path, text) {
            errs.push(e);
        }
        let min = *self.sip.min_expires.get_ref();
        if min > self.sip.max_expires || self.sip.default_expires < min {
            errs.push(locate(
                path,
                text,
                self.sip.min_expires.span().start.max(sip_at),
                format!(
                    "min_expires ({min}) must not exceed max_expires ({}) or default_expires ({})",
                    self.sip.max_expires, self.sip.default_expires
                ),
            ));
        }
        if self.sip.t1_ms == 0 || self.sip.t2_ms < self.sip.t1_ms {
            errs.push(locate(
                path,
                text,
                span_at(
                    text,
                    &[
                        "sip",
                        if self.sip.t1_ms == 0 {
                            "t1_ms"
                        } else {
                            "t2_ms"
                        },
                    ],
                ),
                "timers need 0 < t1_ms <= t2_ms".into(),
            ));
        }
        let min_se = *self.sip.min_se_secs.get_ref();
        let se = self.sip.session_expires_secs;
        if min_se == 0 || (se != 0 && se < min_se) {
            errs.push(locate(
                path,
                text,
                self.sip.min_se_secs.span().start.max(sip_at),
                format!(
                    "need 0 < min_se_secs ({min_se}) <= session_expires_secs ({se}), or session_expires_secs = 0"
                ),
            ));
        }
        if self.sip.digest_algorithms.is_empty() {
            errs.push(locate(
                path,
                text,
                span_at(text, &["sip", "digest_algorithms"]),
                "digest_algorithms must not be empty".into(),
            ));
        }
        if let Err((at, m)) = crate::config_webrtc::validate(&self.media) {
            errs.push(locate(path, text, at, m));
        }
        if let Err((at, m)) = self.server.validate() {
            errs.push(locate(path, text, at, m));
        }
        let max_tick = hotline_media::session::MAX_TICK.as_millis() as u64;
        if let Some(t) = &self.media.tick_ms
            && *t.get_ref() > max_tick
        {
            errs.push(locate(
                path,
                text,
                t.span().start,
                format!(
                    "tick_ms {} must be 0 (read RTP per datagram) or at most {max_tick}",
                    t.get_ref()
                ),
            ));
        }
        let [first, last] = *self.media.rtp_ports.get_ref();
        if let Some(p) = &self.media.shared_rtp_port {
            let port = *p.get_ref();
            if port == 0 || (first..=last).contains(&port) {
                errs.push(locate(
                    path,
                    text,
                    p.span().start,
                    format!(
                        "shared_rtp_port {port} must be a port outside rtp_ports [{first}, {last}] (and not 0)"
                    ),
                ));
            }
        }
        for name in &self.media.kernel_relay {
            let n = name.get_ref();
            // IFNAMSIZ is 16 with the terminating NUL.
            if n.is_empty() || n.len() > 15 || n.contains(['/', ' ', '\0']) {
                errs.push(locate(
                    path,
                    text,
                    name.span().start,
                    format!("kernel_relay: {n:?} is not a network interface name (1 to 15 characters, no '/' or space)"),
                ));
            }
        }
        if first == 0 || last < first.saturating_add(1) {
            errs.push(locate(
                path,
                text,
                self.media.rtp_ports.span().start,
                format!("rtp_ports [{first}, {last}] must hold at least one even/odd pair"),
            ));
        }
        let users: std::collections::HashSet<&String> =
            self.users.iter().map(|u| u.name.get_ref()).collect();
        let mut numbers = std::collections::HashSet::new();
        for n in &self.numbers {
            let name = n.number.get_ref();
            let bad = if name.is_empty() || name.contains(['@', ':', ' ', ';']) {
                Some(format!("invalid number {name:?}"))
            } else if [&n.queue, &n.extension, &n.menu]
                .iter()
                .filter(|x| x.is_some())
                .count()
                != 1
            {
                Some(format!(
                    "number {name:?} needs exactly one of queue, extension or menu"
                ))
            } else if let Err(e) = self.check_target(&n.target(), &users) {
                Some(format!("number {name:?}: {e}"))
            } else if !numbers.insert(name) {
                Some(format!("duplicate number {name:?}"))
            } else if users.contains(name) {
                Some(format!("number {name:?} is also a user"))
            } else {
                None
            };
            if let Some(message) = bad {
                errs.push(locate(path, text, n.number.span().start, message));
            }
        }
        self.validate_routing(path, text, &users, &mut errs);
        errs.extend(crate::config_voicemail::validate(self, path, text));
        errs.extend(crate::config_extensions::validate(self, &users, path, text));
        errs.extend(self.validate_admin(path, text));
        if let Err(e) = crate::config_reliab::validate(self, path, text) {
            errs.push(e);
        }
        if let Some(acd) = &self.acd
            && let Err(e) = hotline_acd::Engine::new(acd, hotline_acd::Millis(0))
        {
            // At the offending key where the engine names one, else at `[acd]`.
            let key: Vec<&str> = ["acd"]
                .into_iter()
                .chain(e.config_key().iter().map(String::as_str))
                .collect();
            errs.push(locate(
                path,
                text,
                span_at(text, &key),
                format!("[acd]: {e}"),
            ));
        }
        if let Some(cti) = &self.cti {
            if let Err((key, e)) = cti.check() {
                let key: Vec<&str> = ["cti"]
                    .into_iter()
                    .chain(key.iter().map(String::as_str))
                    .collect();
                errs.push(locate(path, text, span_at(text, &key), e.to_string()));
            }
            let agents: std::collections::HashSet<&str> = self
                .acd
                .iter()
                .flat_map(|a| a.agents.iter().map(|x| x.id.as_str()))
                .collect();
            if let Some((i, u)) = cti
                .users
                .iter()
                .enumerate()
                .find(|(_, u)| u.agent.as_deref().is_some_and(|a| !agents.contains(a)))
            {
                errs.push(locate(
                    path,
                    text,
                    span_at(text, &["cti", "user", &i.to_string(), "agent"]),
                    format!(
                        "[[cti.user]] {:?}: agent {:?} is not in [acd]",
                        u.name, u.agent
                    ),
                ));
            }
        }
        if let Some(crm) = &self.crm
            && let Err(e) = hotline_crm::Normalizer::new(&crm.default_region)
        {
            let at = span_at(text, &["crm"]);
            errs.push(locate(path, text, at, format!("[crm]: {e}")));
        }
        let url = self.store.url.get_ref();
        if let Some(crm) = &self.crm {
            if let Some(s) = &crm.store
                && !same_store(s.get_ref(), url)
            {
                errs.push(locate(
                    path,
                    text,
                    s.span().start,
                    format!(
                        "[crm] store {:?} differs from [store] url {url:?}: [store] url is \
                         the one database of the CRM and the call records (remove [crm] store)",
                        s.get_ref()
                    ),
                ));
            } else if url == "memory" {
                let at = span_at(text, &["crm"]);
                errs.push(locate(
                    path,
                    text,
                    at,
                    "[crm] needs a database: [store] url = \"memory\" keeps none".into(),
                ));
            }
        }
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if url != "memory"
            && (url.is_empty() || url.contains("://") && !known.iter().any(|k| url.starts_with(k)))
        {
            errs.push(locate(
                path,
                text,
                self.store.url.span().start,
                format!("[store] url {url:?}: use sqlite://PATH, postgres://... or memory"),
            ));
        }
        let mut seen = HashMap::new();
        for u in &self.users {
            let name = u.name.get_ref();
            if name.is_empty() || name.contains(['@', ':', ' ', ';']) {
                errs.push(locate(
                    path,
                    text,
                    u.name.span().start,
                    format!("invalid user name {name:?}"),
                ));
            }
            if seen.insert(name.clone(), ()).is_some() {
                errs.push(locate(
                    path,
                    text,
                    u.name.span().start,
                    format!("duplicate user {name:?}"),
                ));
            }
        }
        errs
    }

    /// Checks `[[menus]]`, `[[hours]]` and `[[queues]]`.
    fn validate_routing(
        &self,
        path: &Path,
        text: &str,
        users: &std::collections::HashSet<&String>,
        errs: &mut Vec<ConfigError>,
    ) {
        let mut names = std::collections::HashSet::new();
        for m in &self.menus {
            let name = m.name.get_ref();
            let at = m.name.span().start;
            if !names.insert(name) {
                errs.push(locate(path, text, at, format!("duplicate menu {name:?}")));
            }
            if m.prompt.is_some() == m.say.is_some() {
                errs.push(locate(
                    path,
                    text,
                    at,
                    format!("menu {name:?} needs exactly one of prompt or say"),
                ));
            }
            for (key, t) in &m.choices {
                let mut chars = key.chars();
                let ok = matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#');
                let err = if !ok {
                    Some(format!(
                        "menu {name:?}: choice {key:?} is not a key (0-9, *, #)"
                    ))
                } else {
                    self.check_target(t.get_ref(), users)
                        .err()
                        .map(|e| format!("menu {name:?} choice {key:?}: {e}"))
                };
                if let Some(e) = err {
                    errs.push(locate(path, text, t.span().start, e));
                }
            }
            if let Some(d) = &m.default
                && let Err(e) = self.check_target(d.get_ref(), users)
            {
                errs.push(locate(
                    path,
                    text,
                    d.span().start,
                    format!("menu {name:?} default: {e}"),
                ));
            }
        }
        let mut hours = std::collections::HashSet::new();
        for h in &self.hours {
            let name = h.name.get_ref();
            if !hours.insert(name) {
                errs.push(locate(
                    path,
                    text,
                    h.name.span().start,
                    format!("duplicate hours {name:?}"),
                ));
            }
            if let Err(e) = hotline_switch::hours::parse_tz(h.timezone.get_ref()).map_err(|e| {
                locate(
                    path,
                    text,
                    h.timezone.span().start.max(h.name.span().start),
                    e,
                )
            }) {
                errs.push(e);
            }
            for o in &h.open {
                let r = o.get_ref();
                let check = hotline_switch::hours::parse_days(&r.days).and_then(|_| {
                    let (f, t) = (
                        hotline_switch::hours::parse_hhmm(&r.from)?,
                        hotline_switch::hours::parse_hhmm(&r.to)?,
                    );
                    if f >= t {
                        return Err(format!(
                            "from {:?} must be before to {:?} (split ranges that cross midnight)",
                            r.from, r.to
                        ));
                    }
                    Ok(())
                });
                if let Err(e) = check
                    .map_err(|e| locate(path, text, o.span().start, format!("hours {name:?}: {e}")))
                {
                    errs.push(e);
                }
            }
            for d in &h.holidays {
                if let Err(e) = hotline_switch::hours::parse_date(d.get_ref())
                    .map_err(|e| locate(path, text, d.span().start, format!("hours {name:?}: {e}")))
                {
                    errs.push(e);
                }
            }
        }
        let mut queues = std::collections::HashSet::new();
        for q in &self.queues {
            let name = q.name.get_ref();
            let at = q.name.span().start;
            let known = self
                .acd
                .as_ref()
                .is_some_and(|a| a.queues.iter().any(|x| &x.name == name));
            let err = if !known {
                Some(format!("queue {name:?} is not in [acd]"))
            } else if !queues.insert(name) {
                Some(format!("duplicate queue options {name:?}"))
            } else if q.whisper.is_some() && q.whisper_say.is_some() {
                Some(format!("queue {name:?}: whisper and whisper_say both set"))
            } else {
                None
            };
            if let Some(e) = err {
                errs.push(locate(path, text, at, e));
            }
            for (what, k) in [
                ("leave_key", &q.leave_key),
                ("callback_key", &q.callback_key),
            ] {
                let Some(k) = k else { continue };
                let mut chars = k.get_ref().chars();
                if !matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#')
                {
                    errs.push(locate(
                        path,
                        text,
                        k.span().start,
                        format!(
                            "queue {name:?}: {what} {:?} is not a key (0-9, *, #)",
                            k.get_ref()
                        ),
                    ));
                }
            }
            if let (Some(a), Some(b)) = (&q.leave_key, &q.callback_key)
                && a.get_ref() == b.get_ref()
            {
                errs.push(locate(
                    path,
                    text,
                    b.span().start,
                    format!("queue {name:?}: callback_key is the same key as leave_key"),
                ));
            }
        }
    }

    /// Checks a target's references (menus, queues, users, hours) and shape.
    pub(crate) fn check_target(
        &self,
        t: &RouteTarget,
        users: &std::collections::HashSet<&String>,
    ) -> Result<(), String> {
        let kinds = [
            t.queue.is_some(),
            t.extension.is_some(),
            t.menu.is_some(),
            t.say.is_some(),
            t.prompt.is_some(),
            t.hangup == Some(true),
            t.voicemail.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(
                "needs exactly one of queue, extension, menu, say, prompt, voicemail or hangup = true"
                    .into(),
            );
        }
        if let Some(b) = &t.voicemail
            && !crate::config_voicemail::known(self, b)
        {
            return Err(format!(
                "voicemail box {b:?} is not defined in [[voicemail]]"
            ));
        }
        if let Some(m) = &t.menu
            && !self.menus.iter().any(|x| x.name.get_ref() == m)
        {
            return Err(format!("menu {m:?} is not defined in [[menus]]"));
        }
        if let Some(e) = &t.extension
            && !users.contains(e)
        {
            return Err(format!("extension {e:?} is not a user"));
        }
        if let (Some(acd), Some(q)) = (&self.acd, &t.queue)
            && !acd.queues.iter().any(|x| &x.name == q)
        {
            return Err(format!("queue {q:?} is not in [acd]"));
        }
        if let Some(h) = &t.hours
            && !self.hours.iter().any(|x| x.name.get_ref() == h)
        {
            return Err(format!("hours {h:?} are not defined in [[hours]]"));
        }
        if t.closed.is_some() && t.hours.is_none() {
            return Err("closed needs hours".into());
        }
        if let Some(c) = &t.closed {
            self.check_target(c, users)
                .map_err(|e| format!("closed: {e}"))?;
        }
        Ok(())
    }

    /// The SIP core's configuration; `secret` seeds nonces.
    pub fn core_config(&self, secret: [u8; 32]) -> CoreConfig {
        let s = &self.sip;
        CoreConfig {
            domains: s.domains.clone(),
            realm: s.realm.clone(),
            users: self
                .users
                .iter()
                .map(|u| (u.name.get_ref().clone(), u.password.clone()))
                .collect(),
            algorithms: s.digest_algorithms.iter().map(|a| a.0).collect(),
            nonce_ttl: Duration::from_secs(s.nonce_ttl_secs),
            secret,
            trusted: s.trusted.iter().map(|n| n.0).collect(),
            static_route: s.static_route.map(|r| r.0),
            registrar: RegistrarConfig {
                min_expires: *s.min_expires.get_ref(),
                max_expires: s.max_expires,
                default_expires: s.default_expires,
                max_contacts: s.max_contacts,
            },
            timers: TimerConfig {
                t1: Duration::from_millis(s.t1_ms),
                t2: Duration::from_millis(s.t2_ms),
                t4: Duration::from_millis(s.t4_ms),
                ..TimerConfig::default()
            },
            limits: Limits {
                max_message_size: s.max_message_size,
                max_headers: s.max_headers,
            },
            authenticate_requests: s.authenticate_requests,
            max_transactions: s.max_transactions,
            numbers: self
                .numbers
                .iter()
                .map(|n| n.number.get_ref().clone())
                .collect(),
            guard: s.guard.to_config(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    /// Every file in `config/` must parse (ACD-owned files are parsed by their crate).
    #[test]
    fn every_sip_config_file_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.extension().is_some_and(|e| e == "toml") && name != "simulate.toml" {
                Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                n += 1;
            }
        }
        assert!(n >= 2, "expected hotline.toml and bench.toml");
    }

    /// The demo: two queues, a menu choosing between them, office hours, three agents.
    #[test]
    fn demo_config_has_menu_queues_hours_and_agents() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let cfg = Config::load(&dir.join("hotline.toml")).unwrap();
        let acd = cfg.acd.as_ref().unwrap();
        let queues: Vec<&str> = acd.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(queues, ["sales", "support"]);
        assert_eq!(acd.agents.len(), 2);
        assert_eq!(cfg.users.len(), 3);
        let main = &cfg.menus[0];
        let to = |k: &str| main.choices[k].get_ref().queue.clone();
        assert_eq!(to("1").as_deref(), Some("sales"));
        assert_eq!(to("2").as_deref(), Some("support"));
        let menu_number = cfg.numbers.iter().find(|n| n.menu.is_some()).unwrap();
        assert_eq!(menu_number.hours.as_deref(), Some("office"));
        assert_eq!(cfg.hours[0].open.len(), 2);
        assert!(acd.queues.iter().all(|q| q.announce_secs > 0));
    }

    /// `[store] url` is the one database setting; `[crm] store` alone still works
    /// (deprecated), next to a different `[store] url` it is an error at its line.
    #[test]
    fn store_url_is_the_one_database_setting() {
        let base = "[sip]\nudp = [\"127.0.0.1:5060\"]\n";
        let crm = |extra: &str| parse(&format!("{base}[crm]\ndefault_region = \"DE\"\n{extra}"));
        // Only [store]: the CRM reads it, nothing deprecated.
        let c = crm("[store]\nurl = \"postgres://db/h\"\n").unwrap();
        assert_eq!(c.store.url.get_ref(), "postgres://db/h");
        assert!(c.deprecations().is_empty());
        // Only [crm] store: it becomes the one store (CDRs follow), with a warning.
        let c = crm("store = \"data/crm.sqlite\"\n").unwrap();
        assert_eq!(c.store.url.get_ref(), "data/crm.sqlite");
        assert_eq!(c.deprecations().len(), 1, "{:?}", c.deprecations());
        assert!(c.deprecations()[0].contains("[store] url"));
        // Both, naming the same database in different spellings: accepted, still warned.
        let c = crm("store = \"data/h.db\"\n[store]\nurl = \"sqlite://data/h.db\"\n").unwrap();
        assert_eq!(c.deprecations().len(), 1);
        // Both, different: an error at the [crm] store line and column.
        let e =
            crm("store = \"data/crm.sqlite\"\n[store]\nurl = \"postgres://db/h\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (5, 9), "{e}");
        assert!(e.message.contains("differs from [store] url"), "{e}");
        // `hotline config check` reports the same error.
        let text = format!("{base}[crm]\nstore = \"a.sqlite\"\n[store]\nurl = \"b.sqlite\"\n");
        let errs = Config::check(Path::new("t.toml"), &text).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.line == 4 && e.message.contains("differs")),
            "{errs:?}"
        );
        // The CRM needs a real database.
        let e = crm("[store]\nurl = \"memory\"\n").unwrap_err();
        assert!(e.message.contains("[crm] needs a database"), "{e}");
        assert_eq!((e.line, e.column), (3, 1), "at the [crm] header: {e}");
        // Located by the parser's spans, not by the first "[crm]" in the text (here
        // comments before the table).
        let text = format!(
            "# the [crm] table is below\n{base}  # [crm] next\n[crm]\n[store]\nurl = \"memory\"\n"
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("[crm] needs a database"), "{e}");
        assert_eq!((e.line, e.column), (5, 1), "{e}");
        // No [crm]: the default store, nothing to warn about.
        let c = parse(base).unwrap();
        assert_eq!(c.store.url.get_ref(), "sqlite://data/hotline.db");
        assert!(c.deprecations().is_empty());
    }

    #[test]
    fn bench_config_is_trusted_loopback_with_static_route() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let cfg = Config::load(&dir.join("bench.toml")).unwrap();
        let core = cfg.core_config([0; 32]);
        assert!(core.trusted[0].contains("127.0.0.1".parse().unwrap()));
        let route = core.static_route.unwrap();
        // Typed: rkyv (under the WebRTC stack) adds `PartialEq` impls for `SocketAddr`.
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(route.addr, addr("127.0.0.1:5080"));
        assert_eq!(cfg.sip.udp, vec![addr("127.0.0.1:5070")]);
    }

    #[test]
    fn unknown_field_reports_line_and_column() {
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\nbogus = 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1), "{e}");
        assert!(e.message.contains("bogus"), "{e}");
        assert!(e.to_string().starts_with("test.toml:3:1:"));
    }

    #[test]
    fn bad_values_report_their_position() {
        let e =
            parse("[sip]\nudp = [\"127.0.0.1:5060\"]\ntrusted = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("invalid network"), "{e}");
        let e = parse("[sip]\nudp = [\"nonsense\"]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e =
            parse("[sip]\nudp = [\"127.0.0.1:5060\"]\nstatic_route = \"http://x\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\ndigest_algorithms = [\"SHA-1\"]\n")
            .unwrap_err();
        assert!(e.message.contains("unknown digest algorithm"), "{e}");
    }

    #[test]
    fn numbers_route_to_queues_and_are_validated() {
        let cfg = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[media]\nrtp_ports = [30000, 30099]\n[[numbers]]\nnumber = \"4000\"\nqueue = \"support\"\n").unwrap();
        assert_eq!(*cfg.media.rtp_ports.get_ref(), [30000, 30099]);
        assert!(cfg.core_config([0; 32]).numbers.contains("4000"));
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[[numbers]]\nnumber = \"4000\"\nqueue = \"a\"\n[[numbers]]\nnumber = \"4000\"\nqueue = \"b\"\n").unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(e.message.contains("duplicate number"), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[[users]]\nname = \"4000\"\npassword = \"x\"\n[[numbers]]\nnumber = \"4000\"\nqueue = \"a\"\n").unwrap_err();
        assert!(e.message.contains("also a user"), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[[numbers]]\nnumber = \"4001\"\nextension = \"bob\"\n").unwrap_err();
        assert!(e.message.contains("not a user"), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[[numbers]]\nnumber = \"4001\"\n")
            .unwrap_err();
        assert!(e.message.contains("exactly one"), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[[numbers]]\nnumber = \"4002\"\nqueue = \"sales\"\n[acd]\n[[acd.queue]]\nname = \"support\"\n").unwrap_err();
        assert!(e.message.contains("not in [acd]"), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[acd]\n[[acd.agent]]\nid = \"bob\"\nqueues = { nowhere = 0 }\n").unwrap_err();
        assert_eq!((e.line, e.column), (6, 22), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[media]\nrtp_ports = [30001, 30001]\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[media]\nport = 1\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn media_tick_is_validated_with_its_position() {
        let head = "[sip]\nudp = [\"127.0.0.1:5060\"]\n[media]\n";
        assert_eq!(parse(head).unwrap().media.tick_ms, None);
        for ok in [0, 10, 40] {
            let cfg = parse(&format!("{head}tick_ms = {ok}\n")).unwrap();
            assert_eq!(cfg.media.tick_ms.map(|t| *t.get_ref()), Some(ok));
        }
        let e = parse(&format!("{head}rtp_ip = \"127.0.0.1\"\ntick_ms = 41\n")).unwrap_err();
        assert_eq!((e.line, e.column), (5, 11), "{e}");
        assert!(e.message.contains("at most 40"), "{e}");
        let e = parse(&format!("{head}tick_ms = -1\n")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn shared_rtp_port_is_validated_with_its_position() {
        let head = "[sip]\nudp = [\"127.0.0.1:5060\"]\n[media]\nrtp_ports = [20000, 20099]\n";
        assert_eq!(parse(head).unwrap().media.shared_rtp_port, None);
        let cfg = parse(&format!("{head}shared_rtp_port = 19998\n")).unwrap();
        assert_eq!(cfg.media.shared_rtp_port.map(|p| *p.get_ref()), Some(19998));
        for bad in [20000, 20099, 20050, 0] {
            let e = parse(&format!("{head}shared_rtp_port = {bad}\n")).unwrap_err();
            assert_eq!((e.line, e.column), (5, 19), "{bad}: {e}");
            assert!(
                e.message.contains("outside rtp_ports [20000, 20099]"),
                "{e}"
            );
        }
        let e = parse(&format!("{head}shared_rtp_port = 70000\n")).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn kernel_relay_interfaces_are_validated_with_their_position() {
        let head = "[sip]\nudp = [\"127.0.0.1:5060\"]\n[media]\n";
        assert!(parse(head).unwrap().media.kernel_relay.is_empty());
        let cfg = parse(&format!("{head}kernel_relay = [\"eth0\", \"lo\"]\n")).unwrap();
        assert_eq!(cfg.media.kernel_relay_interfaces(), ["eth0", "lo"]);
        for bad in ["", "a/b", "has space", "sixteen-chars-xx"] {
            let e = parse(&format!("{head}kernel_relay = [\"lo\", \"{bad}\"]\n")).unwrap_err();
            assert_eq!((e.line, e.column), (4, 23), "{bad:?}: {e}");
            assert!(e.message.contains("not a network interface name"), "{e}");
        }
        let e = parse(&format!("{head}kernel_relay = \"eth0\"\n")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }

    const SIP: &str =
        "[sip]\nudp = [\"127.0.0.1:5060\"]\n[[users]]\nname = \"bob\"\npassword = \"x\"\n";

    #[test]
    fn menus_hours_and_queue_options_parse() {
        let cfg = parse(&format!(
            "{SIP}[[numbers]]\nnumber = \"5000\"\nmenu = \"main\"\nhours = \"office\"\n\
             closed = {{ say = \"Closed\" }}\n\
             [[menus]]\nname = \"main\"\nsay = \"Press 1\"\n\
             choices = {{ \"1\" = {{ queue = \"sales\" }}, \"2\" = {{ extension = \"bob\", hours = \"office\", closed = {{ hangup = true }} }}, \"9\" = {{ menu = \"main\" }} }}\n\
             [[hours]]\nname = \"office\"\ntimezone = \"Europe/Berlin\"\n\
             open = [{{ days = \"mon-fri\", from = \"08:00\", to = \"18:00\" }}]\nholidays = [\"2026-12-25\"]\n\
             [[queues]]\nname = \"sales\"\nleave_key = \"*\"\nwhisper_say = \"Sales\"\n\
             [acd]\n[[acd.queue]]\nname = \"sales\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.menus[0].choices.len(), 3);
        assert_eq!(cfg.hours[0].open.len(), 1);
        assert_eq!(cfg.numbers[0].target().menu.as_deref(), Some("main"));
    }

    /// Mistakes in the routing sections point at the line (and column) of the culprit.
    #[test]
    fn routing_errors_are_located() {
        let at = |extra: &str| {
            let text = format!("{SIP}{extra}");
            let e = parse(&text).unwrap_err();
            (e.line, e.column, e.message)
        };
        // Line 6 is the first line after SIP.
        let (l, _, m) = at("[[numbers]]\nnumber = \"5000\"\nmenu = \"nowhere\"\n");
        assert_eq!(l, 7);
        assert!(m.contains("menu \"nowhere\" is not defined"), "{m}");
        let (l, c, m) = at(
            "[[menus]]\nname = \"m\"\nsay = \"x\"\nchoices = { \"1\" = { queue = \"q\", menu = \"m\" } }\n",
        );
        assert_eq!((l, c), (9, 19), "{m}");
        assert!(m.contains("exactly one"), "{m}");
        let (l, _, m) =
            at("[[menus]]\nname = \"m\"\nsay = \"x\"\nchoices = { \"12\" = { hangup = true } }\n");
        assert_eq!(l, 9);
        assert!(m.contains("not a key"), "{m}");
        let (l, _, m) = at("[[menus]]\nname = \"m\"\n");
        assert_eq!(l, 7);
        assert!(m.contains("prompt or say"), "{m}");
        let (l, _, m) = at("[[hours]]\nname = \"h\"\ntimezone = \"Mars/Olympus\"\n");
        assert_eq!(l, 8);
        assert!(m.contains("unknown time zone"), "{m}");
        let (l, c, m) = at(
            "[[hours]]\nname = \"h\"\nopen = [\n  { days = \"mon-fri\", from = \"18:00\", to = \"08:00\" },\n]\n",
        );
        assert_eq!((l, c), (9, 3), "{m}");
        assert!(m.contains("must be before"), "{m}");
        let (l, _, m) = at(
            "[[hours]]\nname = \"h\"\nopen = [{ days = \"funday\", from = \"08:00\", to = \"18:00\" }]\n",
        );
        assert_eq!(l, 8);
        assert!(m.contains("unknown weekday"), "{m}");
        let (l, _, m) = at("[[hours]]\nname = \"h\"\nholidays = [\"2026-02-30\"]\n");
        assert_eq!(l, 8);
        assert!(m.contains("invalid date"), "{m}");
        let (l, _, m) =
            at("[[numbers]]\nnumber = \"5000\"\nextension = \"bob\"\nhours = \"nope\"\n");
        assert_eq!(l, 7);
        assert!(m.contains("hours \"nope\" are not defined"), "{m}");
        let (l, _, m) = at("[[queues]]\nname = \"ghost\"\n");
        assert_eq!(l, 7);
        assert!(m.contains("not in [acd]"), "{m}");
        let (l, c, m) = at(
            "[[queues]]\nname = \"q\"\nleave_key = \"star\"\n[acd]\n[[acd.queue]]\nname = \"q\"\n",
        );
        assert_eq!((l, c), (8, 13), "{m}");
        let (l, _, m) = at("[[menus]]\nname = \"m\"\nsay = \"x\"\ntimeout = 3\n");
        assert_eq!(l, 9);
        assert!(m.contains("unknown field"), "{m}");
    }

    #[test]
    fn validation_errors_are_located() {
        let cfg = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[sip.guard]\nrate = 5\nburst = 9\nallow = [\"192.0.2.0/24\"]\ndrop_scanners = false\n").unwrap();
        let g = cfg.core_config([0; 32]).guard;
        assert_eq!((g.rate, g.burst), (5, 9));
        assert!(g.allow[0].contains("192.0.2.9".parse().unwrap()));
        assert!(g.scanner_agents.is_empty());
        let g = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n")
            .unwrap()
            .core_config([0; 32])
            .guard;
        assert!(g.scanner_agents.iter().any(|a| a == "friendly-scanner"));
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[sip.guard]\nallow = [\"x/1\"]\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("test.toml:4:"), "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\nmin_expires = 9000\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[sip]\nudp = [\"127.0.0.1:5060\"]\n[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"a\"\npassword = \"y\"\n").unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(e.message.contains("duplicate"));
        let e = parse("[sip]\nrealm = \"x\"\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }

    /// A PHC string that parses (the CTI checks the form, not the password).
    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    /// Errors of `[acd]`, `[cti]`, `[qualify]` and `[admin]` point at the offending key or
    /// value as the TOML parser saw it, not at the first place the table's name is written
    /// (a comment, a string): the traps below each fail with a text search.
    #[test]
    fn errors_are_located_by_the_parser_not_by_text_search() {
        let at = |text: &str| {
            let e = parse(text).unwrap_err();
            (e.line, e.column, e.message)
        };
        let sip = "[sip]\nudp = [\"127.0.0.1:5060\"]\n";
        // The table's name in a comment before the table.
        let (l, c, m) = at(&format!(
            "# [cti] is below\n{sip}[cti]\nheartbeat_secs = 0\n"
        ));
        assert_eq!((l, c), (5, 18), "{m}");
        assert!(m.contains("heartbeat_secs"), "{m}");
        // An inline table (root keys come before the first header).
        let (l, c, m) = at(&format!("# [cti]\ncti = {{ heartbeat_secs = 0 }}\n{sip}"));
        assert_eq!((l, c), (2, 26), "{m}");
        // A dotted key.
        let (l, c, m) = at(&format!("# [cti]\ncti.token_ttl_secs = 0\n{sip}"));
        assert_eq!((l, c), (2, 22), "{m}");
        // A user entry: the second user's bad hash, then an agent not in [acd].
        let users = format!(
            "[[cti.user]]\nname = \"ann\"\npassword_hash = \"{HASH}\"\nrole = \"admin\"\n\
             [[cti.user]]\nname = \"bo\"\npassword_hash = \"nope\"\nrole = \"admin\"\n"
        );
        let (l, c, m) = at(&format!("{sip}# [cti]\n{users}"));
        assert_eq!((l, c), (10, 17), "{m}");
        assert!(m.contains("password_hash"), "{m}");
        let users = users.replace(
            "\"nope\"\nrole = \"admin\"",
            &format!("\"{HASH}\"\nrole = \"agent\"\nagent = \"zed\""),
        );
        let (l, c, m) = at(&format!("{sip}# [cti]\n{users}"));
        assert_eq!((l, c), (12, 9), "{m}");
        assert!(m.contains("not in [acd]"), "{m}");
        // [acd] named in a string before the table; the table only as `[[acd.queue]]`.
        let (l, c, m) = at(&format!(
            "{sip}realm = \"[acd] x\"\n[[acd.queue]]\nname = \"q\"\nsl_target_pct = 500.0\n"
        ));
        assert!(m.starts_with("[acd]"), "{m}");
        assert_eq!((l, c), (6, 17), "{m}");
        // [qualify] in a comment; the bad key in the table.
        let (l, c, m) = at(&format!(
            "{sip}# [qualify] below\n[qualify]\ninterval_secs = 1\ntimeout_ms = 1000\n"
        ));
        assert_eq!((l, c), (6, 14), "{m}");
        // The second of a list of words.
        let (l, c, m) = at(&format!(
            "{sip}# [admin]\n[admin]\ndispositions = [\"sale\", \" \"]\n"
        ));
        assert_eq!((l, c), (5, 25), "{m}");
        // A default left unset points at its table, not at a comment naming it.
        let (l, c, m) =
            at("# [sip] first\n[sip]\nudp = [\"127.0.0.1:5060\"]\ndigest_algorithms = []\n");
        assert_eq!((l, c), (4, 21), "{m}");
        let (l, c, m) = at("# no [sip] listener\n[sip]\nrealm = \"x\"\n");
        assert_eq!((l, c), (2, 1), "{m}");
    }
    /// Every error the ACD engine finds in `[acd]` points at the offending key's value
    /// (line and column), not at the table: queues and agents by their place in the
    /// array, overflow steps and skills by theirs, map entries by their key.
    #[test]
    fn acd_errors_point_at_the_offending_key() {
        let sip = "[sip]\nudp = [\"127.0.0.1:5060\"]\n[acd]\n";
        let q = "[[acd.queue]]\nname = \"q\"\n";
        let cases: &[(&str, String, (usize, usize))] = &[
            ("duplicate queue name", format!("{q}{q}"), (7, 8)),
            ("empty name", "[[acd.queue]]\nname = \"\"\n".into(), (5, 8)),
            (
                "proficiency 11",
                format!("{q}skills = [{{ skill = \"de\" }}, {{ skill = \"en\", min = 11 }}]\n"),
                (6, 51),
            ),
            ("0..=100", format!("{q}sl_target_pct = 101.0\n"), (6, 17)),
            ("-1000..=1000", format!("{q}weight = 1001\n"), (6, 10)),
            (
                "must be > 0",
                format!("{q}expected_aht_secs = 0\n"),
                (6, 21),
            ),
            (
                "after_secs must not decrease",
                format!(
                    "{q}[[acd.queue.overflow]]\nafter_secs = 10\n\
                     [[acd.queue.overflow]]\nafter_secs = 5\n"
                ),
                (9, 14),
            ),
            (
                "proficiency 0",
                format!("{q}overflow = [{{ after_secs = 1, min_proficiency = 0 }}]\n"),
                (6, 49),
            ),
            (
                "unknown queue \"nope\"",
                format!("{q}overflow = [{{ after_secs = 1, add_queues = [\"q\", \"nope\"] }}]\n"),
                (6, 50),
            ),
            (
                "unknown queue \"gone\"",
                format!("{q}fallback = {{ queue = \"gone\" }}\n"),
                (6, 12),
            ),
            (
                "cannot fall back to itself",
                format!("{q}fallback = {{ queue = \"q\" }}\n"),
                (6, 12),
            ),
            (
                "form a cycle",
                format!(
                    "{q}fallback = {{ queue = \"r\" }}\n\
                     [[acd.queue]]\nname = \"r\"\nfallback = {{ queue = \"q\" }}\n"
                ),
                (6, 12),
            ),
            (
                "tier_priority \"vip\"",
                format!("{q}[acd.tier_priority]\ngold = 5\nvip = 1001\n"),
                (8, 7),
            ),
            (
                "duplicate agent id",
                format!("{q}[[acd.agent]]\nid = \"a\"\n[[acd.agent]]\nid = \"a\"\n"),
                (9, 6),
            ),
            ("empty id", format!("{q}[[acd.agent]]\nid = \"\"\n"), (7, 6)),
            (
                "proficiency 12",
                format!("{q}[[acd.agent]]\nid = \"a\"\nskills = {{ de = 5, en = 12 }}\n"),
                (8, 25),
            ),
            (
                "unknown queue \"nowhere\"",
                format!("{q}[[acd.agent]]\nid = \"a\"\nqueues = {{ q = 0, nowhere = 1 }}\n"),
                (8, 29),
            ),
        ];
        for (want, acd, (line, column)) in cases {
            let text = format!("{sip}{acd}");
            let e = parse(&text).unwrap_err();
            assert!(
                e.message.starts_with("[acd]") && e.message.contains(want),
                "{want}: {e}\n{text}"
            );
            assert_eq!((e.line, e.column), (*line, *column), "{want}: {e}\n{text}");
        }
    }

    /// The limits only the engine knows (64 sites, 65,535 skills) point at the entry
    /// that went past them: the agent's `site`, the queue's `sites` or overflow
    /// `add_sites` element, the queue's `skills` element, the agent's `skills` key.
    #[test]
    fn acd_engine_limits_point_at_the_entry_past_them() {
        let head = "[sip]\nudp = [\"127.0.0.1:5060\"]\n[acd]\n";
        // Agents at sites s0..s63 (lines 4..=195, three lines each): the 65th site is new.
        let agents: String = (0..64)
            .map(|i| format!("[[acd.agent]]\nid = \"a{i}\"\nsite = \"s{i}\"\n"))
            .collect();
        let q = "[[acd.queue]]\nname = \"q\"\n";
        let all: Vec<String> = (0..64).map(|i| format!("\"s{i}\"")).collect();
        let sites = all.join(", ");
        let cases: Vec<(&str, String, (usize, usize))> = vec![
            (
                "more than 64 distinct sites",
                format!("{agents}[[acd.agent]]\nid = \"x\"\nsite = \"s64\"\n"),
                (4 + 64 * 3 + 2, 8),
            ),
            (
                "more than 64 distinct sites",
                format!("{q}sites = [{sites}, \"s64\"]\n"),
                (6, 10 + sites.len() + 2),
            ),
            (
                "more than 64 distinct sites",
                format!(
                    "{q}sites = [{sites}]\n\
                     overflow = [{{ after_secs = 5, add_sites = [\"s0\", \"s64\"] }}]\n"
                ),
                (7, 50),
            ),
        ];
        for (want, acd, (line, column)) in cases {
            let text = format!("{head}{acd}");
            let e = parse(&text).unwrap_err();
            assert!(
                e.message.starts_with("[acd]") && e.message.contains(want),
                "{want}: {e}"
            );
            assert_eq!((e.line, e.column), (line, column), "{want}: {e}");
        }
        // 65,535 distinct skills: queue skills use them all, the agent's one more is
        // past the limit (at its key); one more in the queue is past it there.
        let many: Vec<String> = (0..65_535)
            .map(|i| format!("{{ skill = \"k{i}\" }}"))
            .collect();
        let many = many.join(", ");
        let text = format!(
            "{head}{q}skills = [{many}]\n[[acd.agent]]\nid = \"a\"\nskills = {{ extra = 5 }}\n"
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("too many distinct skills"), "{e}");
        assert_eq!((e.line, e.column), (9, 20), "{e}");
        let text = format!("{head}{q}skills = [{many}, {{ skill = \"one-more\" }}]\n");
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("too many distinct skills"), "{e}");
        assert_eq!((e.line, e.column), (6, 11 + many.len() + 2 + 10), "{e}");
    }
}
