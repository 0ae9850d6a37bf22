//! Benchmark: caller number → 360° view (`Store::screen_pop`), p50/p99.
//!
//! ```text
//! cargo run --release -p hotline-crm --example lookup_bench -- --store PATH_OR_URL --customers N
//! ```
//! Generates N synthetic customers first if the store holds fewer (use an empty store),
//! then looks up random generated customers' numbers one at a time, as the call path does,
//! and prints the latency distribution and one JSON line for machines.

use clap::Parser;
use hotline_crm::generate::{GenerateConfig, mobile_number};
use hotline_crm::{Identification, Offer, Store, StoreConfig, Tier};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    store: String,
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    #[arg(long, default_value_t = 20_000)]
    lookups: u64,
    #[arg(long, default_value_t = 20_000)]
    batch: usize,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = Store::open(&args.store, &StoreConfig::default()).await?;
    let (have, ..) = store.counts().await?;
    let mut gen_secs = None;
    if (have as u64) < args.customers {
        let cfg = GenerateConfig {
            customers: args.customers - have as u64,
            seed: 1,
            batch: args.batch,
            ..GenerateConfig::default()
        };
        let mut last = Instant::now();
        let r = store
            .generate(&cfg, |done, total| {
                if last.elapsed().as_secs() >= 30 || done == total {
                    eprintln!("generated {done}/{total}");
                    last = Instant::now();
                }
            })
            .await?;
        eprintln!("generation: {r:?}");
        gen_secs = Some(r.elapsed.as_secs_f64());
        store
            .set_script(
                None,
                None,
                "Good morning[, {title} {surname}][ — is this about repair order {last_ticket}?]",
            )
            .await?;
        let base = Offer {
            id: 0,
            name: String::new(),
            text: String::new(),
            tier: None,
            segment: None,
            min_interactions: None,
            max_open_tickets: None,
            last_disposition: None,
            rank: 0,
        };
        store
            .add_offer(&Offer {
                name: "vip-care".into(),
                text: "Premium care".into(),
                tier: Some(Tier::Vip),
                rank: 10,
                ..base.clone()
            })
            .await?;
        store
            .add_offer(&Offer {
                name: "loyalty".into(),
                text: "Loyalty bonus".into(),
                min_interactions: Some(3),
                max_open_tickets: Some(0),
                rank: 5,
                ..base
            })
            .await?;
    }
    let counts = store.counts().await?;
    eprintln!("store: {counts:?} (customers, numbers, interactions, tickets)");
    let n = args.customers.max(1);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next_index = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..1000 {
        store
            .screen_pop(&mobile_number(next_index()), Some("repairs"))
            .await?;
    }
    let mut lat = Vec::with_capacity(args.lookups as usize);
    let mut known = 0u64;
    let started = Instant::now();
    for _ in 0..args.lookups {
        let number = mobile_number(next_index());
        let t = Instant::now();
        let pop = store.screen_pop(&number, Some("repairs")).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if matches!(pop.identification, Identification::Known { .. }) && pop.view.is_some() {
            known += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let (p50, p90, p99, max) = (
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
    );
    println!(
        "backend={:?} customers={} lookups={} known={} p50={p50:.3}ms p90={p90:.3}ms p99={p99:.3}ms max={max:.3}ms rate={:.0}/s generation_s={}",
        store.backend(),
        counts.0,
        lat.len(),
        known,
        lat.len() as f64 / wall,
        gen_secs.map_or("-".into(), |s| format!("{s:.1}"))
    );
    println!(
        "{{\"bench\":\"crm_lookup\",\"backend\":\"{:?}\",\"customers\":{},\"lookups\":{},\"p50_ms\":{p50:.3},\"p99_ms\":{p99:.3},\"max_ms\":{max:.3}}}",
        store.backend(),
        counts.0,
        lat.len()
    );
    store.close().await;
    Ok(())
}
