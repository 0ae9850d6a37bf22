//! Prometheus `/metrics`: one process-wide recorder (the `metrics` facade, so the SIP core,
//! the media relay, call control and the CDR writer count where things happen without
//! knowing the exporter), plus figures read at scrape time from their owners — queue and
//! agent figures from the ACD task, counters the binary registers as collectors — so a
//! scrape shows the state now, never a stale copy.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hotline_switch::{AgentStatus, SwitchHandle};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use crate::CtiError;
use crate::hub::Hub;

/// Latency buckets (seconds) for the screen pop, CRM lookups and CDR commits: 0.5 ms … 5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// A collector the binary registers: sets gauges/counters from state it owns (SIP core
/// counters, active calls) just before a scrape renders.
pub type Collector = Arc<dyn Fn() + Send + Sync>;

/// What `/metrics` renders.
#[derive(Clone)]
pub struct MetricsSource {
    handle: PrometheusHandle,
    collectors: Vec<Collector>,
}

impl std::fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSource")
            .field("collectors", &self.collectors.len())
            .finish()
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle, so several servers in one test process share it).
pub fn install() -> Result<PrometheusHandle, CtiError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    // One installer at a time: a loser of the race must find the winner's handle set, not
    // a recorder installed whose handle is not stored yet (several servers in one process,
    // as in tests).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let bad = |e: metrics_exporter_prometheus::BuildError| CtiError::Metrics(e.to_string());
    let mut builder = PrometheusBuilder::new();
    for name in [
        "hotline_screen_pop_seconds",
        "hotline_crm_lookup_seconds",
        "hotline_cdr_write_seconds",
    ] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), &LATENCY_BUCKETS)
            .map_err(bad)?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => {
            let _ = HANDLE.set(handle.clone());
            describe();
            // Ours is the recorder for good: the SIP core may keep its counter handles.
            hotline_sip::wire_metrics::register();
            Ok(handle)
        }
        // Another recorder (not ours) is installed: say so.
        Err(e) => HANDLE
            .get()
            .cloned()
            .ok_or_else(|| CtiError::Metrics(e.to_string())),
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("hotline_calls_active", "Calls whose call task is running");
    describe_gauge!("hotline_queue_waiting", "Calls waiting in the queue");
    describe_gauge!(
        "hotline_queue_longest_wait_seconds",
        "Wait of the oldest call in the queue"
    );
    describe_gauge!(
        "hotline_queue_service_level",
        "Service level since start (0..1; absent until a call counts)"
    );
    describe_gauge!("hotline_agents", "Agents by state");
    describe_gauge!(
        "hotline_tasks_alive",
        "Tokio tasks alive (leak detection: flat under steady load)"
    );
    describe_gauge!(
        "hotline_rtp_ports_in_use",
        "RTP/RTCP port pairs held by calls (0 when idle)"
    );
    describe_gauge!(
        "hotline_open_fds",
        "Open file descriptors, sockets included (Linux)"
    );
    describe_gauge!(
        "hotline_resident_memory_bytes",
        "Resident set size of the process (Linux)"
    );
    describe_counter!(
        "hotline_sip_requests_total",
        "SIP requests on the wire (retransmissions included)"
    );
    describe_counter!(
        "hotline_sip_responses_total",
        "SIP responses on the wire (retransmissions included)"
    );
    describe_counter!(
        "hotline_rtp_packets_received_total",
        "RTP packets received on relayed legs (added when a media session ends)"
    );
    describe_counter!(
        "hotline_rtp_packets_lost_total",
        "RTP packets lost before Hotline, from sequence gaps (added when a session ends)"
    );
    describe_histogram!(
        "hotline_screen_pop_seconds",
        metrics::Unit::Seconds,
        "call.offered published until written to the agent's desk socket"
    );
    describe_histogram!(
        "hotline_crm_lookup_seconds",
        metrics::Unit::Seconds,
        "Caller identification in the CRM"
    );
    describe_histogram!(
        "hotline_cdr_write_seconds",
        metrics::Unit::Seconds,
        "One batch commit of CDRs and queue-log lines"
    );
}

impl MetricsSource {
    pub fn new(handle: PrometheusHandle) -> Self {
        MetricsSource {
            handle,
            collectors: Vec::new(),
        }
    }

    /// Adds a collector run before every scrape.
    pub fn with_collector(mut self, c: Collector) -> Self {
        self.collectors.push(c);
        self
    }

    /// The exposition text, after refreshing what is read at scrape time.
    pub async fn render(&self, switch: Option<&SwitchHandle>) -> String {
        for c in &self.collectors {
            c();
        }
        if let Some(s) = switch {
            scrape_switch(s).await;
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Every state name an agent can be in (each is exported, 0 included).
const AGENT_STATES: [&str; 6] = [
    "logged_out",
    "ready",
    "reserved",
    "on_call",
    "wrap_up",
    "not_ready",
];

fn state_name(s: &AgentStatus) -> &'static str {
    match s {
        AgentStatus::LoggedOut => "logged_out",
        AgentStatus::Ready => "ready",
        AgentStatus::Reserved { .. } => "reserved",
        AgentStatus::OnCall { .. } => "on_call",
        AgentStatus::WrapUp { .. } => "wrap_up",
        AgentStatus::NotReady { .. } => "not_ready",
    }
}

/// Queue and agent figures from the ACD task (its one owner).
async fn scrape_switch(switch: &SwitchHandle) {
    if let Ok(stats) = switch.queue_stats().await {
        for q in stats {
            let queue = q.queue.clone();
            metrics::gauge!("hotline_queue_waiting", "queue" => queue.clone())
                .set(f64::from(q.waiting));
            metrics::gauge!("hotline_queue_longest_wait_seconds", "queue" => queue.clone())
                .set(q.longest_wait_secs);
            if let Some(sl) = q.service_level {
                metrics::gauge!("hotline_queue_service_level", "queue" => queue.clone()).set(sl);
            }
            metrics::counter!("hotline_queue_offered_total", "queue" => queue.clone())
                .absolute(q.offered);
            metrics::counter!("hotline_queue_answered_total", "queue" => queue.clone())
                .absolute(q.answered);
            metrics::counter!("hotline_queue_abandoned_total", "queue" => queue)
                .absolute(q.abandoned);
        }
    }
    if let Ok(agents) = switch.agents().await {
        let mut counts = [0u32; AGENT_STATES.len()];
        for a in &agents {
            let name = state_name(&a.status);
            if let Some(i) = AGENT_STATES.iter().position(|s| *s == name) {
                counts[i] += 1;
            }
        }
        for (state, n) in AGENT_STATES.iter().zip(counts) {
            metrics::gauge!("hotline_agents", "state" => *state).set(f64::from(n));
        }
    }
}

fn exposition(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn on_cti(State(hub): State<Arc<Hub>>) -> Response {
    match &hub.cfg.supervision.metrics {
        Some(m) => exposition(m.render(Some(&hub.switch)).await),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// `/metrics` on the CTI server.
pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new().route("/metrics", get(on_cti))
}

/// `/metrics` on a listener of its own (`[metrics] listen`), e.g. for a scraper on another
/// network than the desks. Returns the bound address and the server task.
pub async fn serve(
    listen: SocketAddr,
    source: MetricsSource,
    switch: Option<SwitchHandle>,
) -> Result<(SocketAddr, JoinHandle<()>), CtiError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CtiError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| CtiError::Bind {
        addr: listen,
        source,
    })?;
    let state = Arc::new((source, switch));
    let app = Router::new()
        .route(
            "/metrics",
            get(
                |State(s): State<Arc<(MetricsSource, Option<SwitchHandle>)>>| async move {
                    exposition(s.0.render(s.1.as_ref()).await)
                },
            ),
        )
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
    tracing::info!(%addr, "metrics listening");
    Ok((addr, task))
}
