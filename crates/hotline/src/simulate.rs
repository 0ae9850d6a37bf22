//! `hotline simulate`: the ACD simulator for people — what-if runs of a center, and staffing.
//!
//! ```text
//! # expected SL/ASA/abandonment/occupancy of the example center
//! hotline simulate --config config/simulate.toml
//! # what if sales gets 400 calls/hour?
//! hotline simulate --config config/simulate.toml \
//!     --queue sales --calls-per-hour 400
//! # how many agents for 80/20 at 300 calls/hour with AHT 240 s?
//! hotline simulate --staffing \
//!     --calls-per-hour 300 --aht 240 --sl-secs 20 --target 80
//! ```

use anyhow::{Context, bail};
use hotline_acd::QueueConfig;
use hotline_acd::sim::{SimConfig, SimParams, StaffingQuery, TrafficOverride, simulate, staffing};

/// Arguments of `hotline simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Simulation file (TOML: [sim], [acd], [[agents]], [[traffic]]).
    #[arg(long)]
    config: Option<String>,
    /// Staffing mode: smallest agent count meeting --target.
    #[arg(long)]
    staffing: bool,
    /// Queue whose traffic to change (what-if) or to staff (template from --config).
    #[arg(long)]
    queue: Option<String>,
    /// Arrivals per hour.
    #[arg(long)]
    calls_per_hour: Option<f64>,
    /// Mean talk time in seconds.
    #[arg(long)]
    aht: Option<f64>,
    /// Mean caller patience in seconds (0 = callers never hang up).
    #[arg(long)]
    patience: Option<f64>,
    /// Service-level threshold in seconds (staffing mode).
    #[arg(long)]
    sl_secs: Option<u32>,
    /// Service-level target in percent (staffing mode).
    #[arg(long, default_value_t = 80.0)]
    target: f64,
    /// Simulated hours (overrides the file).
    #[arg(long)]
    hours: Option<f64>,
    /// RNG seed (overrides the file).
    #[arg(long)]
    seed: Option<u64>,
    /// Staffing mode: give up above this many agents.
    #[arg(long, default_value_t = 2000)]
    max_agents: u32,
}

/// Runs a simulation or a staffing search and prints the report.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            Some(SimConfig::from_toml(&text).with_context(|| format!("in {path}"))?)
        }
        None => None,
    };
    if args.staffing {
        let (Some(calls_per_hour), Some(aht)) = (args.calls_per_hour, args.aht) else {
            bail!("--staffing needs --calls-per-hour and --aht");
        };
        let mut queue = match (&file, &args.queue) {
            (Some(f), Some(name)) => f
                .acd
                .queues
                .iter()
                .find(|q| &q.name == name)
                .cloned()
                .with_context(|| format!("no queue {name:?} in the config"))?,
            _ => QueueConfig::new("q"),
        };
        // The staffed queue stands alone: its overflow partners are not simulated.
        queue.overflow.clear();
        queue.fallback = hotline_acd::Fallback::Hangup;
        if let Some(s) = args.sl_secs {
            queue.sl_secs = s;
        }
        let mut sim = SimParams {
            hours: 200.0,
            warmup_hours: 1.0,
            ..SimParams::default()
        };
        if let Some(h) = args.hours {
            sim.hours = h;
        }
        if let Some(s) = args.seed {
            sim.seed = s;
        }
        let q = StaffingQuery {
            queue,
            calls_per_hour,
            aht_secs: aht,
            patience_secs: args.patience.filter(|p| *p > 0.0),
            target: args.target / 100.0,
            sim,
            max_agents: args.max_agents,
        };
        print!("{}", staffing(&q)?.to_text(&q));
        return Ok(());
    }
    let Some(mut cfg) = file else {
        bail!("give --config FILE (or --staffing)");
    };
    if args.calls_per_hour.is_some() || args.aht.is_some() || args.patience.is_some() {
        cfg = cfg.with_override(&TrafficOverride {
            queue: args.queue.clone(),
            calls_per_hour: args.calls_per_hour,
            aht_secs: args.aht,
            patience_secs: args.patience,
        })?;
    }
    if let Some(h) = args.hours {
        cfg.sim.hours = h;
    }
    if let Some(s) = args.seed {
        cfg.sim.seed = s;
    }
    print!("{}", simulate(&cfg)?.to_text());
    Ok(())
}
