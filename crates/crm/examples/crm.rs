//! Demonstrates the CRM store until `hotline crm ...` is wired into the binary:
//!
//! ```text
//! cargo run -p hotline-crm --example crm -- [--store LOCATION] [--region DE] import FILE.csv
//! cargo run -p hotline-crm --example crm -- [--store LOCATION] generate --customers N [--seed S]
//! cargo run -p hotline-crm --example crm -- [--store LOCATION] pop NUMBER [--queue Q]
//! ```
//! LOCATION is an SQLite path (default `data/crm.sqlite`) or a `postgres://` URL.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hotline_crm::generate::GenerateConfig;
use hotline_crm::import::ImportProgress;
use hotline_crm::{Error, Store, StoreConfig};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
struct Cli {
    /// SQLite file path or postgres:// URL.
    #[arg(long, default_value = "data/crm.sqlite")]
    store: String,
    /// Region for numbers written without a country code.
    #[arg(long, default_value = "DE")]
    region: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import customers from a CSV file (validated completely before anything is written).
    Import { file: std::path::PathBuf },
    /// Generate synthetic customers with numbers, interactions and tickets.
    Generate {
        #[arg(long)]
        customers: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Identify a caller and print the screen pop as JSON.
    Pop {
        number: String,
        #[arg(long)]
        queue: Option<String>,
    },
}

fn bar(total: u64) -> ProgressBar {
    let b = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = StoreConfig {
        default_region: cli.region.clone(),
        ..StoreConfig::default()
    };
    let store = Store::open(&cli.store, &config)
        .await
        .with_context(|| format!("opening {}", cli.store))?;
    match cli.command {
        Command::Import { file } => {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let b = bar(0);
            let result = store
                .import_customers(std::io::BufReader::new(f), |p| match p {
                    ImportProgress::Validated { rows } => {
                        b.set_message("validated");
                        b.set_length(rows);
                        b.set_position(rows);
                    }
                    ImportProgress::Written { rows, total } => {
                        b.set_message("written");
                        b.set_length(total);
                        b.set_position(rows);
                    }
                })
                .await;
            b.finish();
            match result {
                Ok(r) => println!(
                    "imported {} customers with {} numbers",
                    r.customers, r.numbers
                ),
                Err(Error::ImportRejected(rows)) => {
                    for r in &rows {
                        eprintln!("{}:{r}", file.display());
                    }
                    anyhow::bail!("{} bad row(s); nothing was imported", rows.len());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Generate { customers, seed } => {
            let b = bar(customers);
            b.set_message("customers");
            let cfg = GenerateConfig {
                customers,
                seed,
                ..GenerateConfig::default()
            };
            let r = store.generate(&cfg, |done, _| b.set_position(done)).await?;
            b.finish();
            println!(
                "generated {} customers, {} numbers, {} interactions, {} tickets in {:.1} s",
                r.customers,
                r.numbers,
                r.interactions,
                r.tickets,
                r.elapsed.as_secs_f64()
            );
        }
        Command::Pop { number, queue } => {
            let pop = store.screen_pop(&number, queue.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&pop)?);
        }
    }
    store.close().await;
    Ok(())
}
