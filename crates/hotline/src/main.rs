//! `hotline`: the call-center softswitch binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod admin;
mod config_cmd;
mod simulate;

#[derive(Parser)]
#[command(name = "hotline", version, about = "Hotline call-center softswitch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, default_value = "config/hotline.toml")]
        config: PathBuf,
    },
    /// Hash a desk (CTI) password for `[[cti.user]] password_hash`: reads the password
    /// from the first line of standard input, prints the argon2id PHC string.
    Passwd,
    /// Simulate a center (what-if) or find the staff for a service level, with the ACD engine.
    Simulate(simulate::SimulateArgs),
    /// Call-center report from the CDRs and queue log (JSON or CSV on stdout).
    Report(admin::ReportArgs),
    /// CRM data: import customers, generate synthetic ones.
    Crm {
        #[command(subcommand)]
        command: admin::CrmCommand,
    },
    /// Configuration files: `hotline config check FILE`.
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    // Commands that print data (reports, JSON, CSV) keep stdout for it and log to stderr.
    match cli.command {
        Command::Serve { .. } | Command::Simulate(_) => {
            tracing_subscriber::fmt().with_env_filter(filter()).init()
        }
        Command::Report(_) | Command::Crm { .. } | Command::Passwd | Command::Config { .. } => {
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .init()
        }
    }
    match cli.command {
        Command::Serve { config } => {
            // Loaded before the runtime: `[server] threads` sizes it.
            let cfg = hotline::Config::load(&config)?;
            let threads = cfg.server.worker_threads();
            // All SIP state stays owned by one task either way; the workers spread the
            // media sessions (whose cost is the kernel's UDP path) over the cores.
            let rt = if threads == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(threads);
                b
            }
            .enable_all()
            .build()
            .context("building the tokio runtime")?;
            tracing::info!(threads, "runtime started");
            rt.block_on(serve(&config, &cfg))
        }
        Command::Simulate(args) => simulate::run(&args),
        Command::Passwd => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let pw = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!pw.is_empty(), "empty password");
            println!("{}", hotline_cti::hash_password(pw)?);
            Ok(())
        }
        Command::Report(args) => small_runtime()?.block_on(admin::report(&args)),
        Command::Crm { command } => small_runtime()?.block_on(admin::crm(&command)),
        Command::Config { command } => {
            if !config_cmd::run(&command)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// The runtime of the store commands (database IO only).
fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

async fn serve(config: &std::path::Path, cfg: &hotline::Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a signal arriving right after startup must already stop us cleanly.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // From the file: the admin API edits it.
    let hotline = hotline::start_file(config).await?;
    // SIGINT: stop now (calls are cut, records written). SIGTERM: drain first; a second
    // signal during the drain cuts it short.
    let drain = tokio::select! {
        _ = int.recv() => false,
        _ = term.recv() => true,
    };
    if drain {
        let policy = cfg.drain.policy();
        tokio::select! {
            r = hotline.drain(&policy) => tracing::info!(?r, "drained"),
            _ = int.recv() => tracing::warn!("drain interrupted"),
            _ = term.recv() => tracing::warn!("drain interrupted"),
        }
    }
    tracing::info!("shutting down");
    hotline.shutdown().await;
    Ok(())
}
