//! Wiring of the supervisor side: the Prometheus recorder with collectors for the state
//! the binary owns (SIP core counters, live calls), and the CDR store behind the report
//! endpoints.

use std::sync::Arc;

use anyhow::Context;
use hotline_cti::Supervision;
use hotline_cti::metrics::MetricsSource;
use hotline_cti::reports::ReportSource;
use hotline_sip::Counters;
use hotline_switch::SwitchStats;

use crate::Config;

/// The metrics source, or `None` with `[metrics] enabled = false`.
pub fn metrics_source(
    cfg: &Config,
    sip: Arc<Counters>,
    calls: Option<Arc<SwitchStats>>,
    ports: Option<Arc<hotline_media::PortAllocator>>,
    shared_rtp: Option<Arc<hotline_media::SharedPort>>,
    kernel_relay: Option<Arc<hotline_media::kernel::KernelRelay>>,
) -> anyhow::Result<Option<MetricsSource>> {
    if !cfg.metrics.enabled {
        return Ok(None);
    }
    let handle = hotline_cti::metrics::install().context("installing the metrics recorder")?;
    let collect = move || {
        let c = |name: &'static str, v: &std::sync::atomic::AtomicU64| {
            metrics::counter!(name).absolute(Counters::get(v));
        };
        c("hotline_sip_messages_received_total", &sip.received);
        c("hotline_sip_malformed_total", &sip.malformed);
        c("hotline_sip_forwarded_total", &sip.forwarded);
        c("hotline_sip_registrations_total", &sip.registered);
        c("hotline_sip_overloaded_total", &sip.overloaded);
        c(
            "hotline_sip_retransmissions_absorbed_total",
            &sip.retransmissions_absorbed,
        );
        c("hotline_sip_guard_dropped_total", &sip.guard_dropped);
        c("hotline_sip_lockouts_total", &sip.lockouts);
        c("hotline_sip_scanners_dropped_total", &sip.scanners_dropped);
        if let Some(s) = &calls {
            metrics::gauge!("hotline_calls_active").set(s.active_calls() as f64);
            metrics::counter!("hotline_calls_total").absolute(s.total_calls() as u64);
        }
        if let Some(p) = &ports {
            metrics::gauge!("hotline_rtp_ports_in_use").set(p.in_use() as f64);
        }
        if let Some(p) = &shared_rtp {
            let s = p.stats();
            metrics::gauge!("hotline_shared_rtp_legs").set(s.legs as f64);
            metrics::counter!("hotline_shared_rtp_routed_total").absolute(s.routed);
            // Datagrams from addresses no leg has (a caller not sending from its SDP
            // address is not heard on the shared port) and for legs too slow to read.
            metrics::counter!("hotline_shared_rtp_unknown_total").absolute(s.unknown);
            metrics::counter!("hotline_shared_rtp_overflow_total").absolute(s.overflow);
            metrics::counter!("hotline_shared_rtp_crossed_total").absolute(s.crossed);
        }
        if let Some(k) = &kernel_relay {
            let t = k.totals();
            metrics::gauge!("hotline_kernel_relay_flows").set(t.flows as f64);
            metrics::counter!("hotline_kernel_relay_forwarded_total").absolute(t.forwarded);
        }
        leak_gauges();
    };
    Ok(Some(
        MetricsSource::new(handle).with_collector(Arc::new(collect)),
    ))
}

/// Gauges that show a leak as growth over a long run: live tokio tasks, open file
/// descriptors (sockets included) and resident memory (Linux `/proc`; absent elsewhere).
fn leak_gauges() {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("hotline_tasks_alive").set(h.metrics().num_alive_tasks() as f64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("hotline_open_fds").set(fds.count() as f64);
    }
    if let Some(kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(rss_kib)
    {
        metrics::gauge!("hotline_resident_memory_bytes").set((kb * 1024) as f64);
    }
}

/// `VmRSS` in KiB from the text of `/proc/self/status`.
fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What the CTI server needs for `/metrics` and `/api/reports`.
pub fn supervision(
    cfg: &Config,
    metrics: Option<MetricsSource>,
    store: Option<hotline_cdr::CdrStore>,
) -> Supervision {
    let (service_level_secs, short_abandon_secs) = report_thresholds(cfg);
    Supervision {
        metrics,
        reports: store.map(|store| ReportSource {
            store,
            service_level_secs,
            short_abandon_secs,
        }),
    }
}

/// Default report thresholds: the queues' `sl_secs` when they agree (else 20) and
/// `[acd] short_abandon_secs` (else 5).
pub fn report_thresholds(cfg: &Config) -> (u32, u32) {
    let acd = cfg.acd.as_ref();
    let mut sl = acd
        .into_iter()
        .flat_map(|a| a.queues.iter().map(|q| q.sl_secs));
    let sl_secs = match sl.next() {
        Some(first) if sl.all(|s| s == first) => first,
        _ => 20,
    };
    (sl_secs, acd.map_or(5, |a| a.short_abandon_secs))
}

/// The separate `/metrics` listener of `[metrics] listen`, if configured.
pub async fn metrics_listener(
    cfg: &Config,
    source: Option<MetricsSource>,
    switch: Option<hotline_switch::SwitchHandle>,
) -> anyhow::Result<Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>> {
    match (cfg.metrics.listen, source) {
        (Some(addr), Some(source)) => Ok(Some(
            hotline_cti::metrics::serve(addr, source, switch)
                .await
                .context("starting the metrics listener")?,
        )),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rss_from_proc_status() {
        let status = "Name:\thotline\nVmPeak:\t  9000 kB\nVmRSS:\t   5120 kB\nThreads:\t3\n";
        assert_eq!(super::rss_kib(status), Some(5120));
        assert_eq!(super::rss_kib("Name: x\n"), None);
        assert_eq!(super::rss_kib("VmRSS: lots kB\n"), None);
    }
}
