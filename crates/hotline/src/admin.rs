//! The store commands: `hotline report` and `hotline crm import|generate`. They open the
//! `[store]` of the configuration file (the same database the server uses) and leave the
//! server's in-progress calls alone.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use hotline::Config;
use hotline::store::redact;
use hotline_cdr::report::{Calendar, GroupBy, ReportOptions, build_in};
use hotline_cdr::{CdrStore, StoreOptions, now_millis, time::parse_time};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy, ValueEnum)]
pub enum By {
    Queue,
    Agent,
    Hour,
    Day,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

/// `hotline report`.
#[derive(Args)]
pub struct ReportArgs {
    /// Configuration file (its `[store]` and `[acd]` are used).
    #[arg(long, default_value = "config/hotline.toml")]
    config: PathBuf,
    /// Start of the window, UTC: `2026-11-23`, `2026-11-23T08:00[:00][Z]` or Unix ms.
    #[arg(long)]
    from: String,
    /// End of the window (exclusive), same forms; default now.
    #[arg(long)]
    to: Option<String>,
    /// One row per queue, agent, hour or day.
    #[arg(long, value_enum, default_value = "queue")]
    by: By,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Service-level threshold in seconds; default the queues' `sl_secs` when they agree,
    /// else 20.
    #[arg(long)]
    sl_secs: Option<u32>,
    /// Short-abandon threshold in seconds; default `[acd] short_abandon_secs` (5).
    #[arg(long)]
    short_abandon_secs: Option<u32>,
    /// Hour and day rows in this time zone (`UTC`, `+01:00`, `Europe/Berlin`); default UTC.
    #[arg(long)]
    tz: Option<String>,
}

/// `hotline crm ...`.
#[derive(Subcommand)]
pub enum CrmCommand {
    /// Import customers from CSV; every row is checked first and nothing is written if any
    /// row is bad (the errors list file:line: reason).
    Import {
        file: PathBuf,
        #[command(flatten)]
        store: CrmStoreArgs,
    },
    /// Generate N synthetic customers with numbers, interactions and tickets (demos,
    /// benchmarks).
    Generate {
        #[arg(long)]
        customers: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        store: CrmStoreArgs,
    },
}

#[derive(Args)]
pub struct CrmStoreArgs {
    /// Configuration file (its `[store] url` is used).
    #[arg(long, default_value = "config/hotline.toml")]
    config: PathBuf,
    /// ISO 3166 region for numbers written without a country code.
    #[arg(long, default_value = "DE")]
    region: String,
}

fn store_url(config: &std::path::Path) -> anyhow::Result<String> {
    let cfg = Config::load(config)?;
    let url = cfg.store.url.into_inner();
    if url == "memory" {
        bail!(
            "{}: [store] url = \"memory\" keeps nothing to report on or import into",
            config.display()
        );
    }
    Ok(url)
}

pub async fn report(a: &ReportArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&a.config)?;
    let url = cfg.store.url.get_ref().clone();
    if url == "memory" {
        bail!(
            "{}: [store] url = \"memory\" keeps no CDRs",
            a.config.display()
        );
    }
    let from = parse_time(&a.from).context("--from")?;
    let now = now_millis();
    let to = match &a.to {
        Some(t) => parse_time(t).context("--to")?,
        None => now,
    };
    if to <= from {
        bail!("--to must be after --from");
    }
    let (default_sl, default_short) = hotline::supervision::report_thresholds(&cfg);
    let sl_secs = a.sl_secs.unwrap_or(default_sl);
    let short = a.short_abandon_secs.unwrap_or(default_short);
    let store = CdrStore::open(&url, &StoreOptions::default())
        .await
        .with_context(|| format!("opening the store {}", redact(&url)))?;
    let input = store.report_input(from, to).await?;
    store.close().await;
    let calendar = match &a.tz {
        Some(t) => Calendar::zone(hotline_switch::hours::parse_tz(t).map_err(anyhow::Error::msg)?),
        None => Calendar::utc(),
    };
    let report = build_in(
        &input,
        &ReportOptions {
            by: match a.by {
                By::Queue => GroupBy::Queue,
                By::Agent => GroupBy::Agent,
                By::Hour => GroupBy::Hour,
                By::Day => GroupBy::Day,
            },
            service_level_secs: sl_secs,
            short_abandon_secs: short,
            now,
        },
        &calendar,
    );
    let stdout = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer_pretty(stdout, &report)?;
            println!();
        }
        Format::Csv => report.write_csv(stdout)?,
    }
    Ok(())
}

fn bar() -> ProgressBar {
    let b = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

async fn crm_store(s: &CrmStoreArgs) -> anyhow::Result<hotline_crm::Store> {
    let url = store_url(&s.config)?;
    let config = hotline_crm::StoreConfig {
        default_region: s.region.clone(),
        ..hotline_crm::StoreConfig::default()
    };
    hotline_crm::Store::open(&url, &config)
        .await
        .with_context(|| format!("opening the store {}", redact(&url)))
}

pub async fn crm(cmd: &CrmCommand) -> anyhow::Result<()> {
    match cmd {
        CrmCommand::Import { file, store } => {
            let f =
                std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            let store = crm_store(store).await?;
            let b = bar();
            let result = store
                .import_customers(std::io::BufReader::new(f), |p| match p {
                    hotline_crm::import::ImportProgress::Validated { rows } => {
                        b.set_message("validated");
                        b.set_length(rows);
                        b.set_position(rows);
                    }
                    hotline_crm::import::ImportProgress::Written { rows, total } => {
                        b.set_message("written");
                        b.set_length(total);
                        b.set_position(rows);
                    }
                })
                .await;
            b.finish_and_clear();
            store.close().await;
            match result {
                Ok(r) => {
                    println!(
                        "imported {} customers with {} numbers",
                        r.customers, r.numbers
                    );
                    Ok(())
                }
                Err(hotline_crm::Error::ImportRejected(rows)) => {
                    for r in &rows {
                        eprintln!("{}:{}: {}", file.display(), r.line, r.reason);
                    }
                    bail!("{} bad row(s); nothing was imported", rows.len())
                }
                Err(e) => Err(e.into()),
            }
        }
        CrmCommand::Generate {
            customers,
            seed,
            store,
        } => {
            let store = crm_store(store).await?;
            let b = bar();
            b.set_length(*customers);
            b.set_message("customers");
            let cfg = hotline_crm::generate::GenerateConfig {
                customers: *customers,
                seed: *seed,
                ..hotline_crm::generate::GenerateConfig::default()
            };
            let r = store.generate(&cfg, |done, _| b.set_position(done)).await;
            b.finish_and_clear();
            store.close().await;
            let r = r?;
            println!(
                "generated {} customers, {} numbers, {} interactions, {} tickets in {:.1} s",
                r.customers,
                r.numbers,
                r.interactions,
                r.tickets,
                r.elapsed.as_secs_f64()
            );
            Ok(())
        }
    }
}
