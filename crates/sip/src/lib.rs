//! Hotline's SIP stack.
//!
//! The sans-IO core ([`transaction`], [`dialog`], [`auth`], [`registrar`], [`proxy`])
//! takes `(input, now)` and returns what to send and when to wake up; [`server`] is the
//! tokio layer around it (UDP, TCP, TLS, WS and WSS transports; [`tls`], [`ws`]). Messages are the rsip API from
//! `rsipstack::sip`, reached only through [`msg`].

pub mod app;
pub mod auth;
pub mod dialog;
mod error;
pub mod flow;
pub mod fuzzing;
pub mod guard;
pub mod msg;
pub mod percent;
mod proxied;
pub mod proxy;
pub mod refer;
pub mod registrar;
pub mod server;
pub mod session_timer;
pub mod tls;
pub mod transaction;
pub mod wire_metrics;
pub mod ws;

use std::net::IpAddr;

pub use app::{AppEvent, AppResponse, ClientTxId, ServerTxId};
pub use error::Error;
pub use flow::{Flow, Transmit, Transport};
pub use proxy::{Core, CoreConfig, Counters, REJOIN_HEADER, Target};

/// An IP network in CIDR notation (`127.0.0.0/8`, `::1/128`), for trusted peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 nets).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Config(format!("invalid network {s:?} (expected e.g. 10.0.0.0/8)"));
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { net, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let n: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(n.contains("127.1.2.3".parse().unwrap()));
        assert!(!n.contains("128.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.1".parse().unwrap()));
        let v6: Cidr = "::1".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()));
        assert!(!v6.contains("::2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
