//! `[metrics]`: the Prometheus endpoint. `/metrics` is served on the CTI server when there
//! is one; `listen` adds (or, without `[cti]`, provides) a listener of its own.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Record metrics at all (default true; the cost is a few atomic adds per message).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A separate address serving only `/metrics`, e.g. `"127.0.0.1:9464"`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

fn yes() -> bool {
    true
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            enabled: true,
            listen: None,
        }
    }
}
